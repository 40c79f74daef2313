// minigpt::tokenizer: text <-> token ids for GGUF vocabularies ("gpt2" byte-level BPE with any
// llama.cpp pre-tokenizer, "llama" SentencePiece BPE, "bert" WordPiece, "t5" Unigram), and
// stream_decoder, which turns generated ids into text as they arrive.
//
// Encoding follows llama.cpp (the conformance vectors in ../shared/vocab are its output): the text
// is first cut at special tokens, longest first: user-defined tokens always, control and unknown
// tokens only with parse_special (and never inside the literal ranges of encode_with_literals,
// i.e. user content in a chat prompt); a token with the lstrip/rstrip attribute swallows the ASCII
// whitespace beside it. Each remaining fragment goes to the model's encoder (bpe_tokenizer.hpp,
// spm_tokenizer.hpp, wpm_ugm_tokenizer.hpp). Without parse_special, control tokens are never
// produced from text: "<s>" is just three characters. A SentencePiece fragment at the start of the
// text or right after a special token gets the leading "▁" (add_space_prefix).
//
// Decoding concatenates the tokens' bytes, drops control/unknown/unused tokens (they are markup,
// not text), removes the space that add_space_prefix added (one leading space of the first piece
// of text), and replaces ill-formed UTF-8 (a token sequence may stop inside a character) by U+FFFD.
// A tokenizer is immutable after construction and cheap to copy (the tables are shared), so one
// instance may be used from many threads.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/text/bpe_tokenizer.hpp"
#include "minigpt/text/pretokenizer.hpp"
#include "minigpt/text/spm_tokenizer.hpp"
#include "minigpt/text/utf8.hpp"
#include "minigpt/text/vocab.hpp"
#include "minigpt/text/vocab_gguf.hpp"
#include "minigpt/text/vocab_index.hpp"
#include "minigpt/text/wpm_ugm_tokenizer.hpp"

namespace minigpt {

// Token texts llama.cpp treats as end of generation besides the EOS/EOT ids.
inline constexpr std::string_view k_eog_token_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>"};

// Per-token attributes llama.cpp sets beyond the token type (its LLAMA_TOKEN_ATTR_LSTRIP/RSTRIP):
// a special token found in text swallows the ASCII whitespace before it (lstrip) or after it (rstrip).
enum token_strip : std::uint8_t { strip_none = 0, strip_left = 1, strip_right = 2 };

class tokenizer {
public:
    // Validates the vocabulary (sizes, special ids in range, merges, unique token texts) and
    // builds the lookup tables.
    explicit tokenizer(vocab_data v) : s_(std::make_shared<const state>(std::move(v))) {}

    static tokenizer from_gguf(const io::gguf_file& f) { return tokenizer(vocab_from_gguf(f)); }

    // Token ids of `text`, with BOS first if add_bos (see add_bos_default()). User-defined tokens
    // (e.g. runs of spaces in GPT-NeoX vocabularies) are always cut out first, as llama.cpp does;
    // control and unknown tokens only with parse_special. Never throws for any input bytes, except
    // add_bos on a vocabulary without BOS.
    std::vector<std::int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const {
        return encode_with_literals(text, add_bos, parse_special, {});
    }

    // As encode(text, add_bos, parse_special), except that control and unknown tokens are never
    // recognised where their text overlaps one of the `literals` ranges (user-supplied content in a
    // rendered chat prompt): a user typing "<|im_end|>" gets the characters, not the end of the turn.
    // The text is otherwise tokenized as one piece, so the ids equal llama.cpp's whenever the
    // literals contain no special-token text.
    std::vector<std::int32_t> encode_with_literals(std::string_view text, bool add_bos, bool parse_special,
                                                   std::span<const text_range> literals) const {
        const state& s = *s_;
        std::vector<std::int32_t> out;
        out.reserve(text.size() / 3 + 2);
        if (add_bos) {
            if (s.v.bos_id < 0) throw error("tokenizer::encode: add_bos asked for, but the vocabulary has no BOS token");
            out.push_back(s.v.bos_id);
        }
        if (s.specials.empty()) {
            encode_fragment(text, true, out);
            return out;
        }
        bool after_special = true;
        for (const auto& f : partition_special(text, parse_special, literals)) {
            if (f.id >= 0) {
                out.push_back(f.id);
                after_special = true;
            } else {
                encode_fragment(text.substr(f.offset, f.length), after_special, out);
                after_special = false;
            }
        }
        return out;
    }

    // Text of a whole sequence (from the start of a text; see the header comment). Throws
    // minigpt::error for an id outside [0, n_vocab).
    std::string decode(std::span<const std::int32_t> ids) const {
        std::string bytes;
        bool strip_space = s_->strip_leading_space;
        for (const std::int32_t id : ids) append_rendered(id, strip_space, bytes);
        return utf8::repair(bytes);
    }

    // The bytes of one token as llama.cpp's token_to_piece(special = true) gives them: byte
    // tokens as their byte, GPT-2 tokens byte-decoded, "▁" as a space, control tokens as their
    // text ("<s>"), unused tokens empty. May be part of a UTF-8 character.
    const std::string& token_to_piece(std::int32_t id) const { return s_->pieces[check(id)]; }

    std::int32_t n_vocab() const { return s_->v.n_vocab(); }
    std::int32_t bos() const { return s_->v.bos_id; }
    std::int32_t eos() const { return s_->v.eos_id; }
    bool is_eog(std::int32_t id) const { return id >= 0 && id < n_vocab() && s_->eog[static_cast<std::size_t>(id)]; }
    // The token's type as llama.cpp uses it: end-of-generation texts such as "<|im_end|>" are
    // control tokens whatever the file says (llama.cpp overrides them the same way).
    token_type type_of(std::int32_t id) const { return s_->type(check(id)); }
    std::uint8_t strip_of(std::int32_t id) const { return s_->strip[check(id)]; }  // token_strip bits
    bool add_bos_default() const { return s_->v.add_bos; }
    const std::string& chat_template() const { return s_->v.chat_template; }
    const vocab_data& vocab() const { return s_->v; }

    // The id whose text is exactly `text` (any token type), if there is one.
    std::optional<std::int32_t> find_token(std::string_view text) const {
        const std::int32_t id = s_->index.find(text);
        if (id < 0) return std::nullopt;
        return id;
    }

private:
    friend class stream_decoder;

    struct state {
        vocab_data v;
        bool spm = false;                    // "llama": SentencePiece BPE
        bool wpm = false, ugm = false;       // "bert", "t5"
        bool strip_leading_space = false;
        text_detail::string_index index;     // all token texts
        std::vector<std::uint8_t> usable;    // (n_vocab) may plain text produce this token?
        std::vector<std::uint8_t> rendered;  // (n_vocab) does decode() show this token?
        std::vector<std::uint8_t> eog;       // (n_vocab)
        std::vector<token_type> types;       // (n_vocab) with llama.cpp's overrides
        std::vector<std::uint8_t> strip;     // (n_vocab) token_strip bits
        std::vector<std::string> pieces;     // (n_vocab) token_to_piece
        std::vector<std::int32_t> specials;  // ids split out by parse_special, longest text first
        text_detail::bpe_encoder bpe;
        text_detail::spm_encoder spm_enc;    // holds pointers to index and usable: state never moves
        text_detail::wpm_encoder wpm_enc;    // holds a pointer to index
        text_detail::ugm_encoder ugm_enc;

        explicit state(vocab_data vocab) : v(std::move(vocab)) {
            validate();
            spm = v.model == "llama";
            wpm = v.model == "bert";
            ugm = v.model == "t5";
            strip_leading_space = (spm || ugm) && v.add_space_prefix;
            index = text_detail::string_index(v.tokens);
            const auto n = v.tokens.size();
            types = v.types.empty() ? std::vector<token_type>(n, token_type::normal) : v.types;
            usable.resize(n);
            rendered.resize(n);
            eog.resize(n);
            pieces.resize(n);
            strip.assign(n, strip_none);
            for (const std::int32_t id : {v.eos_id, v.eot_id})
                if (id >= 0) eog[static_cast<std::size_t>(id)] = 1;
            for (const auto text : k_eog_token_texts)
                if (const std::int32_t id = index.find(text); id >= 0) {
                    eog[static_cast<std::size_t>(id)] = 1;
                    types[static_cast<std::size_t>(id)] = token_type::control;
                }
            for (std::size_t id = 0; id < n; ++id) {
                const token_type t = types[id];
                usable[id] = t == token_type::normal || t == token_type::undefined;
                rendered[id] = t != token_type::control && t != token_type::unknown && t != token_type::unused;
                if ((t == token_type::control || t == token_type::user_defined || t == token_type::unknown) &&
                    !v.tokens[id].empty())
                    specials.push_back(static_cast<std::int32_t>(id));
                pieces[id] = make_piece(id, t);
            }
            std::stable_sort(specials.begin(), specials.end(), [&](std::int32_t a, std::int32_t b) {
                return v.tokens[static_cast<std::size_t>(a)].size() > v.tokens[static_cast<std::size_t>(b)].size();
            });
            set_strip_attributes();
            if (spm) spm_enc = text_detail::spm_encoder(v, index, usable);
            else if (wpm) wpm_enc = text_detail::wpm_encoder(v, index);
            else if (ugm) ugm_enc = text_detail::ugm_encoder(v, types);
            else bpe = text_detail::bpe_encoder(v, index, usable);
        }

        // GGUF files carry no per-token attributes; llama.cpp sets lstrip/rstrip from names:
        // jina-v2 vocabularies' <mask> strips on the left; in Phi-3 models (general.name contains
        // "phi-3" or "phi3") every special token strips on the right except <unk>, <s>, <|endoftext|>.
        void set_strip_attributes() {
            auto contains_any = [](std::string_view s, std::initializer_list<std::string_view> subs) {
                for (const auto sub : subs)
                    if (s.find(sub) != std::string_view::npos) return true;
                return false;
            };
            auto set = [&](std::string_view text, std::uint8_t bit, bool on) {
                const std::int32_t id = index.find(text);
                if (id < 0) return;
                auto& a = strip[static_cast<std::size_t>(id)];
                a = on ? static_cast<std::uint8_t>(a | bit) : static_cast<std::uint8_t>(a & ~bit);
            };
            std::string name = v.name;
            for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (contains_any(v.pre, {"jina-v2-de", "jina-v2-es", "jina-v2-code"})) {
                set("<mask>", strip_left, true);
            } else if (contains_any(name, {"phi-3", "phi3"})) {
                for (const std::int32_t id : specials) strip[static_cast<std::size_t>(id)] |= strip_right;
                set("</s>", strip_right, true);
                for (const auto t : {"<unk>", "<s>", "<|endoftext|>"}) set(t, strip_right, false);
            }
        }
        state(const state&) = delete;
        state& operator=(const state&) = delete;

        token_type type(std::size_t id) const { return types[id]; }

        void validate() const {
            if (v.model != "llama" && v.model != "gpt2" && v.model != "bert" && v.model != "t5")
                throw error("tokenizer: model '" + v.model + "' is not supported (expected 'llama', 'gpt2', 'bert' or 't5')");
            const auto n = v.tokens.size();
            if (n == 0) throw error("tokenizer: the vocabulary has no tokens");
            if (n > 0x7FFFFFFF) throw error("tokenizer: too many tokens");
            if (!v.scores.empty() && v.scores.size() != n)
                throw error("tokenizer: " + std::to_string(v.scores.size()) + " scores for " + std::to_string(n) + " tokens");
            if (!v.types.empty() && v.types.size() != n)
                throw error("tokenizer: " + std::to_string(v.types.size()) + " token types for " + std::to_string(n) + " tokens");
            for (std::size_t i = 0; i < v.types.size(); ++i) {
                const auto t = static_cast<std::int32_t>(v.types[i]);
                if (t < 0 || t > static_cast<std::int32_t>(token_type::byte))
                    throw error("tokenizer: token " + std::to_string(i) + " has invalid type " + std::to_string(t));
            }
            const std::pair<const char*, std::int32_t> ids[] = {
                {"bos_id", v.bos_id}, {"eos_id", v.eos_id}, {"unk_id", v.unk_id}, {"pad_id", v.pad_id}, {"eot_id", v.eot_id}};
            for (const auto& [name, id] : ids)
                if (id < -1 || id >= static_cast<std::int64_t>(n))
                    throw error("tokenizer: " + std::string(name) + " " + std::to_string(id) + " is out of range for " +
                                std::to_string(n) + " tokens");
            if (v.model == "gpt2") (void)unicode::pre_spec_for(v.pre);  // names an unknown pre-tokenizer
        }

        std::string make_piece(std::size_t id, token_type t) const {
            const std::string& text = v.tokens[id];
            switch (t) {
                case token_type::control:
                case token_type::unknown:
                case token_type::user_defined: return text;
                case token_type::unused: return {};
                case token_type::byte:
                    if (detail::is_byte_token_text(text)) return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
                    return text;
                case token_type::normal:
                case token_type::undefined: break;
            }
            if (!spm && !wpm && !ugm) return text_detail::gpt2_decode_text(text);
            std::string out;
            out.reserve(text.size());
            for (std::size_t i = 0; i < text.size();) {
                if (text.compare(i, text_detail::k_spm_space.size(), text_detail::k_spm_space) == 0) {
                    out.push_back(' ');
                    i += text_detail::k_spm_space.size();
                } else {
                    out.push_back(text[i++]);
                }
            }
            return out;
        }
    };

    struct fragment {
        std::int32_t id;  // special token, or -1 for text
        std::size_t offset, length;
    };

    std::size_t check(std::int32_t id) const {
        if (id < 0 || id >= n_vocab())
            throw error("token id " + std::to_string(id) + " is out of range (n_vocab " + std::to_string(n_vocab()) + ")");
        return static_cast<std::size_t>(id);
    }

    void encode_fragment(std::string_view text, bool at_start, std::vector<std::int32_t>& out) const {
        if (text.empty()) return;
        if (s_->spm) s_->spm_enc.encode(text, s_->v.add_space_prefix && at_start, out);
        else if (s_->wpm) s_->wpm_enc.encode(text, out);
        else if (s_->ugm) s_->ugm_enc.encode(text, out);  // each fragment gets its own prefix space, as in llama.cpp
        else s_->bpe.encode(text, out);
    }

    // llama.cpp's split at special tokens (tokenizer_st_partition): each special token, longest
    // first, is cut out of all text fragments that remain, left to right. Control and unknown
    // tokens take part only with parse_special, and never where they overlap a literal range.
    // A token with the lstrip (rstrip) attribute drops the ASCII whitespace before (after) it.
    std::vector<fragment> partition_special(std::string_view text, bool parse_special, std::span<const text_range> literals) const {
        const state& s = *s_;
        auto in_literal = [&](std::size_t b, std::size_t e) {
            for (const auto& r : literals)
                if (b < r.offset + r.length && r.offset < e) return true;
            return false;
        };
        auto is_space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
        std::vector<fragment> frags{{-1, 0, text.size()}}, next;
        for (const std::int32_t sid : s.specials) {
            const auto t_type = s.types[static_cast<std::size_t>(sid)];
            const bool parse_only = t_type == token_type::control || t_type == token_type::unknown;
            if (parse_only && !parse_special) continue;
            const std::string& t = s.v.tokens[static_cast<std::size_t>(sid)];
            const std::uint8_t strip = s.strip[static_cast<std::size_t>(sid)];
            next.clear();
            bool found = false;
            for (const fragment& f : frags) {
                if (f.id >= 0) {
                    next.push_back(f);
                    continue;
                }
                std::size_t base = f.offset, search = f.offset;
                std::size_t end = f.offset + f.length;
                for (;;) {
                    const std::size_t k = text.substr(search, end - search).find(t);
                    if (k == std::string_view::npos) break;
                    const std::size_t match = search + k;
                    if (parse_only && in_literal(match, match + t.size())) {
                        search = match + 1;
                        continue;
                    }
                    found = true;
                    std::size_t left_end = match;
                    if (strip & strip_left)
                        while (left_end > base && is_space(text[left_end - 1])) --left_end;
                    if (left_end > base) next.push_back({-1, base, left_end - base});
                    next.push_back({sid, match, t.size()});
                    base = match + t.size();
                    if ((strip & strip_right) && base < end)
                        while (base < end && is_space(text[base])) ++base;
                    search = base;
                }
                if (base < end) next.push_back({-1, base, end - base});
            }
            if (found) frags.swap(next);
        }
        return frags;
    }

    // Appends what decode() shows for id; strip_space is the pending removal of the prefix space.
    void append_rendered(std::int32_t id, bool& strip_space, std::string& out) const {
        const std::size_t i = check(id);
        if (!s_->rendered[i]) return;
        std::string_view piece = s_->pieces[i];
        if (piece.empty()) return;
        if (strip_space) {
            strip_space = false;
            if (piece.front() == ' ') piece.remove_prefix(1);
        }
        out.append(piece);
    }

    std::shared_ptr<const state> s_;
};

// Turns ids into text one at a time, as generation produces them. Each push returns the text that
// is complete so far; bytes of a character split across tokens are held back until it completes,
// so every returned piece is well-formed UTF-8 and the concatenation of all pieces plus flush()
// equals tokenizer::decode() of all ids. at_text_start = false continues a text (e.g. after a
// prompt): the SentencePiece prefix space is then not removed from the first piece.
class stream_decoder {
public:
    explicit stream_decoder(const tokenizer& t, bool at_text_start = true)
        : tok_(t), strip_space_(at_text_start && t.s_->strip_leading_space) {}

    std::string push(std::int32_t id) {
        tok_.append_rendered(id, strip_space_, pending_);
        std::string out;
        const std::size_t held = utf8::append_repaired(out, pending_, true);
        pending_.erase(0, pending_.size() - held);
        return out;
    }

    // Whatever is held back (an unfinished character becomes U+FFFD); the decoder can go on after.
    std::string flush() {
        std::string out = utf8::repair(pending_);
        pending_.clear();
        return out;
    }

private:
    tokenizer tok_;  // shares the tables: the decoder stays valid if the caller's copy goes away
    std::string pending_;
    bool strip_space_;
};

}  // namespace minigpt
