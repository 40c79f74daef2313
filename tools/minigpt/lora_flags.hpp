// llama.cpp's adapter flags for the minigpt subcommands: --lora FILE (scale 1) and
// --lora-scaled FILE SCALE, both repeatable. --lora-scaled takes two values, which the
// one-value flag parser cannot, so they are taken out of the arguments before it runs.
#pragma once

#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "command.hpp"
#include "minigpt/model/lora.hpp"

namespace minigpt::tool {

inline constexpr const char* lora_usage = " [--lora FILE] [--lora-scaled FILE SCALE]";

struct lora_args {
    std::vector<std::pair<std::string, float>> files;  // adapter path, user scale

    // Returns args without the adapter flags, which it records.
    std::vector<std::string> take(const std::vector<std::string>& args) {
        std::vector<std::string> rest;
        for (std::size_t i = 0; i < args.size(); ++i) {
            const std::string& a = args[i];
            if (a == "--lora" || a.rfind("--lora=", 0) == 0) {
                std::string file = a == "--lora" ? (i + 1 < args.size() ? args[++i] : "") : a.substr(7);
                if (file.empty()) throw usage_error("--lora needs an adapter file");
                files.emplace_back(file, 1.0f);
            } else if (a == "--lora-scaled") {
                if (i + 2 >= args.size()) throw usage_error("--lora-scaled needs an adapter file and a scale");
                const std::string file = args[i + 1], s = args[i + 2];
                char* end = nullptr;
                const float scale = std::strtof(s.c_str(), &end);
                if (s.empty() || *end != '\0' || !std::isfinite(scale))
                    throw usage_error("--lora-scaled " + file + ": '" + s + "' is not a number");
                files.emplace_back(file, scale);
                i += 2;
            } else {
                rest.push_back(a);
            }
        }
        return rest;
    }

    std::vector<lora_binding> load() const {
        std::vector<lora_binding> b;
        for (const auto& [file, scale] : files) b.push_back({lora_adapter::load(file), scale});
        return b;
    }
    bool empty() const noexcept { return files.empty(); }

    // "FILE@SCALE" per adapter, for keys that must tell adapter sets apart (the completion cache).
    std::vector<std::string> identities() const {
        std::vector<std::string> ids;
        for (const auto& [file, scale] : files) ids.push_back(file + "@" + std::to_string(scale));
        return ids;
    }
};

}  // namespace minigpt::tool
