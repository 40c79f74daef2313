// Per-request LoRA adapters in `minigpt serve`, as llama-server does them: adapters are loaded at
// startup (--lora FILE, --lora-scaled FILE SCALE) and numbered 0.. in that order; a completion or
// chat request may carry "lora": [{"id": 0, "scale": 0.5}, ...], and then runs with exactly those
// adapters at those scales (an adapter the list leaves out has scale 0). A request without "lora"
// runs with the server's current scales: the startup ones, or those last set with
// POST /lora-adapters (the same list shape). GET /lora-adapters lists
// [{"id", "path", "scale"}]. Adapters of scale 0 are left out of the computation, so every
// request whose adapters are all at 0 shares the base model's cached prefixes.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "minigpt/model/lora.hpp"
#include "minigpt/serve/openai_api.hpp"

namespace minigpt::serve {

// Scales (one per loaded adapter, in id order) from a [{"id", "scale"}] list; unlisted ids get 0.
inline std::vector<float> parse_lora_scales(const json& list, std::size_t n_loaded, const char* param) {
    if (!list.is_array()) throw bad_request(std::string("'") + param + "' must be an array of {\"id\", \"scale\"} objects", param);
    std::vector<float> scales(n_loaded, 0.0f);
    std::vector<bool> seen(n_loaded, false);
    for (const auto& e : list) {
        if (!e.is_object() || !e.contains("id") || !e.contains("scale"))
            throw bad_request(std::string("each '") + param + "' item must be an object with 'id' and 'scale'", param);
        if (!e["id"].is_number_integer()) throw bad_request(std::string("'") + param + "' id must be an integer", param);
        if (!e["scale"].is_number()) throw bad_request(std::string("'") + param + "' scale must be a number", param);
        const auto id = e["id"].get<std::int64_t>();
        const double scale = e["scale"].get<double>();
        if (id < 0 || static_cast<std::uint64_t>(id) >= n_loaded)
            throw bad_request(std::string("'") + param + "' id " + std::to_string(id) + " is not a loaded adapter (" +
                              std::to_string(n_loaded) + " loaded)", param);
        if (!std::isfinite(scale) || std::fabs(scale) > 1e6)
            throw bad_request(std::string("'") + param + "' scale of adapter " + std::to_string(id) + " is not a finite number", param);
        if (seen[static_cast<std::size_t>(id)]) throw bad_request(std::string("'") + param + "' lists adapter " + std::to_string(id) + " twice", param);
        seen[static_cast<std::size_t>(id)] = true;
        scales[static_cast<std::size_t>(id)] = static_cast<float>(scale);
    }
    return scales;
}

// The bindings a request runs with: the loaded adapters at these scales, zero scales left out.
inline std::vector<lora_binding> bind_adapters(const std::vector<lora_binding>& loaded, const std::vector<float>& scales) {
    std::vector<lora_binding> b;
    for (std::size_t i = 0; i < loaded.size(); ++i)
        if (scales[i] != 0.0f) b.push_back({loaded[i].adapter, scales[i]});
    return b;
}

inline json lora_adapters_json(const std::vector<lora_binding>& loaded, const std::vector<float>& scales) {
    json out = json::array();
    for (std::size_t i = 0; i < loaded.size(); ++i) out.push_back({{"id", i}, {"path", loaded[i].adapter->path()}, {"scale", scales[i]}});
    return out;
}

}  // namespace minigpt::serve
