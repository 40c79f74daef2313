// The small fixed model the LoRA, prompt-cache, completion-cache and server-request harnesses load
// their fuzzed input against (make_seeds.cpp writes the seed adapters, KV files and cache records for
// it). Built in memory, deterministic (same seed every run), so the seeds' model fingerprint and
// tensor shapes match it in every run: a llama with the 259-token synthetic vocabulary, n_embd 16,
// one layer, 2 heads (1 KV head), n_ff 32, trained context 128, untied output, f32 weights.
#pragma once

#include <memory>
#include <vector>

#include "minigpt/generate/generation.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model/model.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/text/tokenizer.hpp"
#include "minigpt/text/vocab.hpp"
#include "minigpt/text/vocab_gguf.hpp"

namespace minigpt::fuzz {

inline std::shared_ptr<const io::gguf_file> fixed_model_file() {
    static const auto file = [] {
        io::gguf_writer w;
        write_vocab(w, synthetic_vocab(259));
        const synth_preset preset{"fuzz", architecture::llama, 259, 128, 16, 1, 2, 1, 32, false};
        synthesize(w, preset, dtype::f32, 11, 0, 1);
        auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
        return std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(std::move(bytes), "fuzz-fixed-model.gguf"));
    }();
    return file;
}

inline const llm& fixed_llm() {
    static const llm lm = [] {
        llm r;
        r.weights = model::from_gguf(fixed_model_file());
        r.vocab = std::make_shared<const tokenizer>(tokenizer::from_gguf(*fixed_model_file()));
        return r;
    }();
    return lm;
}

// The token ids every prompt-cache seed was saved with (and the harness restores against).
inline const std::vector<std::int32_t>& fixed_prompt() {
    static const std::vector<std::int32_t> ids = {1, 75, 104, 111, 111, 114};  // BOS and five other ids
    return ids;
}

}  // namespace minigpt::fuzz
