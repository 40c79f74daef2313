// Speculative-decoding flags of `minigpt generate`, spelt as llama.cpp spells them
// (--model-draft/-md, --draft-max, --draft-min, --draft-p-min, --lookup-ngram).
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "command.hpp"
#include "minigpt/generate/speculative.hpp"

namespace minigpt::tool {

inline void declare_speculative_flags(flags& f) {
    const speculative_params d;
    f.value({"-md", "--model-draft"}, "draft model for speculative decoding (same vocabulary as -m)")
        .value({"--draft-max", "--draft"}, "most tokens drafted per round", std::to_string(d.draft_max))
        .value({"--draft-min"}, "drop drafts shorter than this", std::to_string(d.draft_min))
        .value({"--draft-p-min"}, "stop drafting when the draft's best token is less likely than this", std::to_string(d.draft_p_min))
        .value({"--lookup-ngram"}, "without -md: draft by prompt lookup on the last N tokens (0: off)", "0")
        .boolean({"--draft-fixed"}, "always draft --draft-max tokens (no adaptation to the acceptance rate)");
}

inline bool speculative_requested(const flags& f) { return f.has("--model-draft") || f.integer("--lookup-ngram") > 0; }

inline speculative_params read_speculative_flags(const flags& f) {
    speculative_params p;
    p.draft_max = static_cast<std::int32_t>(f.integer("--draft-max"));
    p.draft_min = static_cast<std::int32_t>(f.integer("--draft-min"));
    p.draft_p_min = static_cast<float>(f.real("--draft-p-min"));
    p.adaptive = !f.on("--draft-fixed");
    return p;
}

// The draft source the flags ask for; the draft model gets the target context's parameters.
inline std::unique_ptr<draft_source> make_draft_source(const flags& f, const context& target, const sampling_params& sp) {
    if (f.has("--model-draft"))
        return std::make_unique<draft_model>(model::load(f.str("--model-draft")), sp, target.n_vocab(), target.params());
    return std::make_unique<prompt_lookup>(static_cast<std::int32_t>(f.integer("--lookup-ngram")));
}

inline void print_speculative_stats(const speculative_stats& s) {
    std::fprintf(stderr, "speculative: %lld rounds, %lld drafted, %lld accepted (acceptance %.1f%%); draft %.2f ms, verify %.2f ms\n",
                 static_cast<long long>(s.n_rounds), static_cast<long long>(s.n_drafted), static_cast<long long>(s.n_accepted),
                 100.0 * s.acceptance_rate(), s.draft_seconds * 1e3, s.verify_seconds * 1e3);
}

}  // namespace minigpt::tool
