// The registry of architectures: general.architecture -> descriptor (model/arch.hpp).
// Adding an architecture: its file, its include here, and one line in the list below.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/model/arch.hpp"
#include "minigpt/model/gemma.hpp"
#include "minigpt/model/gpt2.hpp"
#include "minigpt/model/llama.hpp"
#include "minigpt/model/phi3.hpp"
#include "minigpt/model/qwen3.hpp"
#include "minigpt/model/starcoder2.hpp"

namespace minigpt {

inline const std::vector<const arch_descriptor*>& architectures() {
    static const std::vector<const arch_descriptor*> list = {
        &llama_arch(),
        &qwen2_arch(),
        &qwen3_arch(),
        &gpt2_arch(),
        &phi3_arch(),
        &gemma_arch(),
        &gemma2_arch(),
        &gemma3_arch(),
        &starcoder2_arch(),
    };
    return list;
}

// The descriptor for a general.architecture value (its name or an alias), or nullptr.
inline const arch_descriptor* find_architecture(std::string_view name) {
    for (const auto* d : architectures()) {
        if (name == d->name) return d;
        for (const auto& a : d->aliases)
            if (name == a) return d;
    }
    return nullptr;
}

inline std::string architecture_names() {
    std::string s;
    for (const auto* d : architectures()) s += (s.empty() ? "" : ", ") + std::string(d->name);
    return s;
}

// Like find_architecture, but an unknown name is an error naming it and the supported ones.
inline const arch_descriptor& require_architecture(const std::string& name, const std::string& where) {
    const auto* d = find_architecture(name);
    if (!d) throw error(where + ": unsupported architecture '" + name + "' (supported: " + architecture_names() + ")");
    return *d;
}

}  // namespace minigpt
