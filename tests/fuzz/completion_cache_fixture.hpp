// The request whose cache entries completion_cache_fuzz.cpp looks up (make_seeds.cpp writes the
// seed records under its key), and how the harness lays out its input. Deterministic.
#pragma once

#include <cstdint>
#include <string>

#include "minigpt/frugal/completion_cache.hpp"

namespace minigpt::fuzz {

// Input byte 0 (mod 3): which part of the completion cache the rest of the input feeds.
enum class cache_mode : std::uint8_t {
    record = 0,     // rest: one encoded record (frugal::decode_record, and lookups through a backend that returns it)
    sqlite_row = 1, // rest: byte flags, u16 record length, record, embedding bytes: one row of a SQLite cache
    sqlite_file = 2 // rest: a whole SQLite database file opened as the cache
};

inline const frugal::completion_request& fixed_cache_request() {
    static const frugal::completion_request r = [] {
        frugal::completion_request q;
        q.model_fingerprint = "fuzz-model";
        q.adapters = {"b.gguf@0.5", "a.gguf@1"};
        q.prompt_tokens = {1, 17, 42, 258};
        q.params.max_tokens = 8;
        q.params.stop = {"\n\n"};
        q.params.sampling.temperature = 0.0f;
        q.params.sampling.logit_bias = {{5, -1.5f}};
        return q;
    }();
    return r;
}

// A completion as generation stores it, with or without log-probabilities.
inline frugal::completion fixed_completion(bool with_logprobs) {
    frugal::completion c;
    c.text = "a caf\xC3\xA9!";
    c.tokens = {7, 8, 9};
    if (with_logprobs) c.logprobs = {-0.25f, -1.5f, -0.125f};
    c.reason = stop_reason::stop_string;
    c.stop_string = "\n\n";
    c.stats.n_prompt_tokens = 4;
    c.stats.n_generated = 3;
    c.stats.prompt_seconds = 0.001;
    c.stats.generation_seconds = 0.002;
    c.stats.time_to_first_token = 0.0015;
    return c;
}

}  // namespace minigpt::fuzz
