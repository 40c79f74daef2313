// WordPiece (BERT, `tokenizer.ggml.model = "bert"`) and Unigram (T5 / SentencePiece unigram,
// `"t5"`) encoders for one piece of text, following llama.cpp's llm_tokenizer_wpm / _ugm.
//
// WordPiece: the text is split into words at whitespace; control characters, NUL and U+FFFD are
// dropped; each code point is lower-cased after being reduced to the first code point of its NFD
// form (accents fall away); punctuation, ASCII symbols and CJK ideographs are words of their own.
// Each word, with the phantom "▁" llama.cpp's converter gives word-initial pieces, is cut greedily
// into the longest tokens from the left; a word that cannot be cut completely is one [UNK].
//
// Unigram: the text is normalised (the model's precompiled charsmap, a double array of
// replacement rules, longest match first; user-defined tokens are kept as they are; spaces become
// "▁", one is prepended with add_space_prefix, runs are merged with remove_extra_whitespaces), then
// Viterbi picks the segmentation with the highest total score: normal tokens score their log
// probability, user-defined ones 0, and a code point no token covers is [UNK] with the lowest
// normal score minus 10; consecutive [UNK]s become one.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/text/unicode.hpp"
#include "minigpt/text/utf8.hpp"
#include "minigpt/text/vocab.hpp"
#include "minigpt/text/vocab_index.hpp"

namespace minigpt::text_detail {

inline constexpr std::string_view k_phantom_space = "\xE2\x96\x81";  // U+2581

class wpm_encoder {
public:
    wpm_encoder() = default;
    wpm_encoder(const vocab_data& v, const string_index& index) : index_(&index), unk_id_(v.unk_id) {
        if (unk_id_ < 0) throw error("tokenizer: a WordPiece ('bert') vocabulary needs an unknown token (tokenizer.ggml.unknown_token_id)");
        for (const auto& t : v.tokens) max_token_len_ = std::max(max_token_len_, t.size());
    }

    // The words WordPiece cuts into tokens (see the header comment).
    static std::vector<std::string> words(std::string_view text) {
        std::vector<std::string> words(1);
        for (std::size_t i = 0; i < text.size();) {
            const auto d = utf8::decode(text, i);
            i += d.length;
            const char32_t cp = unicode::nfd_base(d.state == utf8::status::ok ? d.cp : utf8::k_replacement);
            const auto f = unicode::flags_of(cp);
            if (f.is_whitespace()) {
                if (!words.back().empty()) words.emplace_back();
                continue;
            }
            if (cp == 0 || cp == utf8::k_replacement || f.group() == unicode::cpt_group::control) continue;
            const std::string s = utf8::encode(unicode::to_lower(cp));
            if (f.group() == unicode::cpt_group::punctuation || (cp < 0x7F && f.group() == unicode::cpt_group::symbol) ||
                is_chinese_char(cp)) {
                if (!words.back().empty()) words.emplace_back();
                words.back() = s;
                words.emplace_back();
            } else {
                words.back() += s;
            }
        }
        if (words.back().empty()) words.pop_back();
        return words;
    }

    void encode(std::string_view text, std::vector<std::int32_t>& out) const {
        std::string word;
        for (const auto& w : words(text)) {
            word.assign(k_phantom_space).append(w);
            const std::size_t n = word.size(), first = out.size();
            for (std::size_t i = 0; i < n;) {
                std::size_t j = std::min(n, i + max_token_len_);
                std::int32_t id = -1;
                for (; j > i; --j)
                    if ((id = index_->find(std::string_view(word).substr(i, j - i))) >= 0) break;
                if (id < 0) {  // the word cannot be cut completely: all of it is [UNK]
                    out.resize(first);
                    break;
                }
                out.push_back(id);
                i = j;
            }
            if (out.size() == first) out.push_back(unk_id_);
        }
    }

private:
    // The CJK ranges BERT treats as one word each (Hugging Face's list, including its 0x2B920 quirk).
    static bool is_chinese_char(char32_t c) {
        return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
               (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
               (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
    }

    const string_index* index_ = nullptr;
    std::int32_t unk_id_ = -1;
    std::size_t max_token_len_ = 0;
};

class ugm_encoder {
public:
    ugm_encoder() = default;

    // `types` are the token types after llama.cpp's overrides.
    ugm_encoder(const vocab_data& v, const std::vector<token_type>& types) : unk_id_(v.unk_id) {
        if (unk_id_ < 0) throw error("tokenizer: a Unigram ('t5') vocabulary needs an unknown token (tokenizer.ggml.unknown_token_id)");
        add_space_prefix_ = v.add_space_prefix;
        merge_spaces_ = v.remove_extra_whitespaces;
        float min_score = FLT_MAX;
        nodes_.emplace_back();
        user_nodes_.emplace_back();
        for (std::size_t id = 0; id < v.tokens.size(); ++id) {
            const token_type t = types[id];
            const float score = v.scores.empty() ? 0.0f : v.scores[id];
            if (t == token_type::normal) min_score = std::min(min_score, score);
            if (t == token_type::normal || t == token_type::user_defined || t == token_type::unused)
                insert(nodes_, v.tokens[id], static_cast<std::int32_t>(id), t == token_type::user_defined ? 0.0f : score);
            if (t == token_type::user_defined) insert(user_nodes_, v.tokens[id], static_cast<std::int32_t>(id), 0.0f);
        }
        unknown_score_ = min_score - 10.0f;
        load_charsmap(v.precompiled_charsmap);
    }

    void encode(std::string_view text, std::vector<std::int32_t>& out) const {
        const std::string norm = normalize(text);
        const std::size_t n = norm.size();
        if (n == 0) return;
        struct best {
            std::int32_t id;
            std::size_t start;
            float score;
        };
        std::vector<best> results(n + 1, {unk_id_, 0, -FLT_MAX});  // (n + 1) best segmentation ending at each byte
        results[0] = {unk_id_, 0, 0.0f};
        for (std::size_t at = 0; at < n;) {
            const std::size_t cp_len = std::min(lead_length(static_cast<unsigned char>(norm[at])), n - at);
            const best here = results[at];
            bool whole_cp_token = false;
            std::int32_t node = 0;
            for (std::size_t p = at; p < n; ++p) {
                node = child(nodes_, node, static_cast<unsigned char>(norm[p]));
                if (node < 0) break;
                const trie_node& tn = nodes_[static_cast<std::size_t>(node)];
                if (tn.id < 0) continue;
                if (p + 1 - at == cp_len) whole_cp_token = true;
                // Scores add in double, as SentencePiece does, and are kept as float (llama.cpp).
                const double challenger = static_cast<double>(here.score) + static_cast<double>(tn.score);
                if (challenger > results[p + 1].score) results[p + 1] = {tn.id, at, static_cast<float>(challenger)};
            }
            if (!whole_cp_token) {
                const double challenger = static_cast<double>(here.score) + static_cast<double>(unknown_score_);
                if (challenger > results[at + cp_len].score) results[at + cp_len] = {unk_id_, at, static_cast<float>(challenger)};
            }
            at += cp_len;
        }
        const std::size_t first = out.size();
        bool prev_unknown = false;
        for (std::size_t at = n;;) {
            const best& b = results[at];
            const bool unknown = b.id == unk_id_;
            if (!(prev_unknown && unknown)) out.push_back(b.id);
            if (b.start == 0) break;
            prev_unknown = unknown;
            at = b.start;
        }
        std::reverse(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
    }

    // The normalised text Viterbi runs on (see the header comment).
    std::string normalize(std::string_view input) const {
        std::string out;
        out.reserve(input.size() * 3);
        bool space_prepended = false, in_word = false;
        for (std::size_t at = 0; at < input.size();) {
            std::string_view piece;
            std::size_t consumed;
            normalize_prefix(input, at, piece, consumed);
            for (const char c : piece) {
                if (c != ' ') {
                    if (!in_word) {
                        in_word = true;
                        if ((add_space_prefix_ && !space_prepended) || merge_spaces_) {
                            out.append(k_phantom_space);
                            space_prepended = true;
                        }
                    }
                    out.push_back(c);
                } else {
                    in_word = false;
                    if (!merge_spaces_) out.append(k_phantom_space);
                }
            }
            at += consumed;
        }
        return out;
    }

private:
    struct trie_node {
        std::int32_t id = -1;
        float score = 0.0f;
    };
    struct trie {
        std::vector<trie_node> nodes;
        std::unordered_map<std::uint64_t, std::int32_t> edges;  // (node << 8 | byte) -> child
        void emplace_back() { nodes.emplace_back(); }
        std::size_t size() const { return nodes.size(); }
        const trie_node& operator[](std::size_t i) const { return nodes[i]; }
    };

    static void insert(trie& t, std::string_view text, std::int32_t id, float score) {
        std::int32_t node = 0;
        for (const char c : text) {
            const std::uint64_t key = (static_cast<std::uint64_t>(node) << 8) | static_cast<unsigned char>(c);
            auto it = t.edges.find(key);
            if (it == t.edges.end()) {
                it = t.edges.emplace(key, static_cast<std::int32_t>(t.nodes.size())).first;
                t.nodes.emplace_back();
            }
            node = it->second;
        }
        auto& n = t.nodes[static_cast<std::size_t>(node)];
        if (n.id < 0) n = {id, score};  // the first of duplicate texts wins
    }

    static std::int32_t child(const trie& t, std::int32_t node, unsigned char c) {
        const auto it = t.edges.find((static_cast<std::uint64_t>(node) << 8) | c);
        return it == t.edges.end() ? -1 : it->second;
    }

    // llama.cpp's unicode_len_utf8: the length a lead byte announces (1 for continuation bytes).
    static std::size_t lead_length(unsigned char b) {
        static constexpr std::uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
        return lookup[b >> 4];
    }

    // The precompiled charsmap: uint32 size of the double array, the array (uint32 entries), then
    // NUL-terminated replacement strings.
    void load_charsmap(const std::vector<std::uint8_t>& blob) {
        if (blob.empty()) return;
        if (blob.size() < 4) throw error("tokenizer.ggml.precompiled_charsmap: " + std::to_string(blob.size()) + " bytes, too short");
        std::uint32_t xcda_bytes;
        std::memcpy(&xcda_bytes, blob.data(), 4);
        if (xcda_bytes % 4 != 0 || static_cast<std::uint64_t>(xcda_bytes) + 4 >= blob.size())
            throw error("tokenizer.ggml.precompiled_charsmap: double array of " + std::to_string(xcda_bytes) + " bytes does not fit in " +
                        std::to_string(blob.size()) + " bytes");
        xcda_.resize(xcda_bytes / 4);
        std::memcpy(xcda_.data(), blob.data() + 4, xcda_bytes);
        replacements_.assign(reinterpret_cast<const char*>(blob.data()) + 4 + xcda_bytes, blob.size() - 4 - xcda_bytes);
    }

    // One step of normalisation at input[at]: the replacement text and the input bytes it consumes.
    void normalize_prefix(std::string_view input, std::size_t at, std::string_view& piece, std::size_t& consumed) const {
        // A user-defined token is kept as it is (longest match).
        std::size_t user_len = 0;
        for (std::int32_t node = 0, p = static_cast<std::int32_t>(at); static_cast<std::size_t>(p) < input.size(); ++p) {
            node = child(user_nodes_, node, static_cast<unsigned char>(input[static_cast<std::size_t>(p)]));
            if (node < 0) break;
            if (user_nodes_[static_cast<std::size_t>(node)].id >= 0) user_len = static_cast<std::size_t>(p) + 1 - at;
        }
        if (user_len > 0) {
            piece = input.substr(at, user_len);
            consumed = user_len;
            return;
        }
        // The double array: BASE in bits 10-30 (shifted by 8 when bit 9 is set), LCHECK in bits 0-7
        // (and 31), LEAF in bit 8; a leaf's BASE leads to the entry holding the replacement offset.
        std::size_t best_len = 0, best_offset = 0;
        if (!xcda_.empty()) {
            auto entry = [&](std::size_t i, std::uint32_t& v) {
                if (i >= xcda_.size()) return false;
                v = xcda_[i];
                return true;
            };
            auto base_of = [](std::uint32_t v) { return (v >> 10) << ((v & (1u << 9)) >> 6); };
            std::uint32_t v;
            if (entry(0, v)) {
                std::size_t node = base_of(v);
                for (std::size_t p = at; p < input.size(); ++p) {
                    const auto c = static_cast<unsigned char>(input[p]);
                    if (c == 0) break;
                    node ^= c;
                    if (!entry(node, v) || (v & ((1u << 31) | 0xFFu)) != c) break;
                    const bool leaf = (v >> 8) & 1u;
                    node ^= base_of(v);
                    if (leaf) {
                        if (!entry(node, v)) break;
                        best_len = p + 1 - at;
                        best_offset = v & ((1u << 31) - 1);
                    }
                }
            }
        }
        if (best_len > 0) {
            if (best_offset >= replacements_.size())
                throw error("tokenizer.ggml.precompiled_charsmap: replacement offset " + std::to_string(best_offset) + " is out of range");
            const std::size_t end = replacements_.find('\0', best_offset);
            piece = std::string_view(replacements_).substr(best_offset, (end == std::string::npos ? replacements_.size() : end) - best_offset);
            consumed = best_len;
            return;
        }
        const auto d = utf8::decode(input, at);
        if (d.state == utf8::status::ok) {
            piece = input.substr(at, d.length);
            consumed = d.length;
        } else {
            piece = utf8::k_replacement_utf8;  // one byte at a time, as llama.cpp
            consumed = 1;
        }
    }

    std::int32_t unk_id_ = -1;
    bool add_space_prefix_ = true, merge_spaces_ = false;
    float unknown_score_ = 0.0f;
    trie nodes_, user_nodes_;
    std::vector<std::uint32_t> xcda_;
    std::string replacements_;
};

}  // namespace minigpt::text_detail
