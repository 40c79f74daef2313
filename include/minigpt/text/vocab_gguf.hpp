// Reading and writing a vocab_data as the `tokenizer.*` keys of a GGUF file, as llama.cpp does.
//
// Keys: tokenizer.ggml.model, .pre, .tokens, .scores, .token_type, .merges, .bos_token_id,
// .eos_token_id, .unknown_token_id, .padding_token_id, .eot_token_id, .add_bos_token, .add_eos_token,
// .add_space_prefix, .remove_extra_whitespaces, .precompiled_charsmap, tokenizer.chat_template and
// general.name (llama.cpp sets token attributes from it). Token ids are stored as uint32; llama.cpp's
// converters write 0xFFFFFFFF for "none" (stories260K.gguf does), which reads back as -1. Flags
// that are absent take llama.cpp's defaults for the model kind (apply_model_defaults).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/text/pretokenizer.hpp"
#include "minigpt/text/vocab.hpp"

namespace minigpt {

namespace detail {

struct vocab_id_key {
    const char* key;
    std::int32_t vocab_data::*field;
};

inline constexpr vocab_id_key k_vocab_id_keys[] = {
    {"tokenizer.ggml.bos_token_id", &vocab_data::bos_id},
    {"tokenizer.ggml.eos_token_id", &vocab_data::eos_id},
    {"tokenizer.ggml.unknown_token_id", &vocab_data::unk_id},
    {"tokenizer.ggml.padding_token_id", &vocab_data::pad_id},
    {"tokenizer.ggml.eot_token_id", &vocab_data::eot_id},
};

}  // namespace detail

inline vocab_data vocab_from_gguf(const io::gguf_file& f) {
    vocab_data v;
    v.model = f.get<std::string>("tokenizer.ggml.model");
    if (v.model != "llama" && v.model != "gpt2" && v.model != "bert" && v.model != "t5")
        throw error(f.path() + ": tokenizer.ggml.model is '" + v.model +
                    "'; supported are 'llama' (SentencePiece), 'gpt2' (byte-level BPE), 'bert' (WordPiece) and 't5' (Unigram)");
    v.pre = f.get_or<std::string>("tokenizer.ggml.pre", "");
    v.tokens = f.get<std::vector<std::string>>("tokenizer.ggml.tokens");
    const auto n = v.tokens.size();
    if (n == 0) throw error(f.path() + ": tokenizer.ggml.tokens is empty");

    if (auto scores = f.find<std::vector<float>>("tokenizer.ggml.scores")) {
        if (scores->size() != n)
            throw error(f.path() + ": tokenizer.ggml.scores has " + std::to_string(scores->size()) + " entries for " +
                        std::to_string(n) + " tokens");
        v.scores = std::move(*scores);
    }
    if (auto types = f.find<std::vector<std::int32_t>>("tokenizer.ggml.token_type")) {
        if (types->size() != n)
            throw error(f.path() + ": tokenizer.ggml.token_type has " + std::to_string(types->size()) + " entries for " +
                        std::to_string(n) + " tokens");
        v.types.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            const std::int32_t t = (*types)[i];
            if (t < 0 || t > static_cast<std::int32_t>(token_type::byte))
                throw error(f.path() + ": tokenizer.ggml.token_type[" + std::to_string(i) + "] = " + std::to_string(t) +
                            " is not a token type (0..6)");
            v.types.push_back(static_cast<token_type>(t));
        }
    }
    if (auto merges = f.find<std::vector<std::string>>("tokenizer.ggml.merges")) v.merges = std::move(*merges);
    if (v.model == "gpt2" && v.merges.empty())
        throw error(f.path() + ": tokenizer.ggml.merges is missing or empty (required for a 'gpt2' tokenizer)");

    apply_model_defaults(v);
    if (v.model == "gpt2") {
        // Some pre-tokenizers change the defaults (llama3 adds BOS, chatglm has none); an unknown
        // name is reported when the tokenizer is built, so that `info` can still read the file.
        try {
            const auto spec = unicode::pre_spec_for(v.pre);
            if (spec.add_bos) v.add_bos = true;
            if (spec.no_bos) v.bos_id = -1;
        } catch (const error&) {
        }
    }
    for (const auto& k : detail::k_vocab_id_keys) {
        const auto id = f.find<std::int64_t>(k.key);
        if (!id) continue;
        if (*id == 0xFFFFFFFFll || *id == -1) v.*k.field = -1;
        else if (*id < 0 || *id >= static_cast<std::int64_t>(n))
            throw error(f.path() + ": " + k.key + " = " + std::to_string(*id) + " is out of range for " +
                        std::to_string(n) + " tokens");
        else v.*k.field = static_cast<std::int32_t>(*id);
    }
    v.add_bos = f.get_or<bool>("tokenizer.ggml.add_bos_token", v.add_bos);
    v.add_eos = f.get_or<bool>("tokenizer.ggml.add_eos_token", v.add_eos);
    v.add_space_prefix = f.get_or<bool>("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
    v.remove_extra_whitespaces = f.get_or<bool>("tokenizer.ggml.remove_extra_whitespaces", false);
    if (auto charsmap = f.find<std::vector<std::int64_t>>("tokenizer.ggml.precompiled_charsmap")) {
        v.precompiled_charsmap.reserve(charsmap->size());
        for (const auto b : *charsmap) v.precompiled_charsmap.push_back(static_cast<std::uint8_t>(b & 0xFF));  // int8 or uint8
    }
    v.chat_template = f.get_or<std::string>("tokenizer.chat_template", "");
    v.name = f.get_or<std::string>("general.name", "");
    return v;
}

// Writes the tokenizer keys the way llama.cpp's converters do: scores, token types and merges when
// the record has them (GPT-2 vocabularies have no scores), ids that are set, the add_bos/add_eos
// flags, add_space_prefix only where it differs from the model kind's default. Reading the result
// with vocab_from_gguf gives the same record back.
inline void write_vocab(io::gguf_writer& w, const vocab_data& v) {
    const auto n = v.tokens.size();
    if (!v.scores.empty() && v.scores.size() != n)
        throw error("write_vocab: " + std::to_string(v.scores.size()) + " scores for " + std::to_string(n) + " tokens");
    if (!v.types.empty() && v.types.size() != n)
        throw error("write_vocab: " + std::to_string(v.types.size()) + " token types for " + std::to_string(n) + " tokens");
    w.set("tokenizer.ggml.model", v.model);
    if (!v.pre.empty()) w.set("tokenizer.ggml.pre", v.pre);
    w.set("tokenizer.ggml.tokens", v.tokens);
    if (!v.scores.empty()) w.set("tokenizer.ggml.scores", v.scores);
    if (!v.types.empty()) {
        std::vector<std::int32_t> types(n);
        for (std::size_t i = 0; i < n; ++i) types[i] = static_cast<std::int32_t>(v.types[i]);
        w.set("tokenizer.ggml.token_type", types);
    }
    if (!v.merges.empty()) w.set("tokenizer.ggml.merges", v.merges);
    vocab_data defaults;
    defaults.model = v.model;
    apply_model_defaults(defaults);
    for (const auto& k : detail::k_vocab_id_keys) {
        // "None" is written (as 0xFFFFFFFF) only where reading would otherwise assume a default id.
        const std::int32_t id = v.*k.field;
        if (id >= 0 || defaults.*k.field >= 0) w.set(k.key, static_cast<std::uint32_t>(id));
    }
    w.set("tokenizer.ggml.add_bos_token", v.add_bos);
    w.set("tokenizer.ggml.add_eos_token", v.add_eos);
    if (v.add_space_prefix != defaults.add_space_prefix) w.set("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
    if (!v.chat_template.empty()) w.set("tokenizer.chat_template", v.chat_template);
    if (v.remove_extra_whitespaces) w.set("tokenizer.ggml.remove_extra_whitespaces", true);
    if (!v.precompiled_charsmap.empty()) w.set("tokenizer.ggml.precompiled_charsmap", v.precompiled_charsmap);
    if (!v.name.empty()) w.set("general.name", v.name);
}

}  // namespace minigpt
