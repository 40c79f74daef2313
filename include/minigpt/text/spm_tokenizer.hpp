// SentencePiece BPE by scores (`tokenizer.ggml.model = "llama"`): the encoder for one piece of text.
//
// As llama.cpp's llm_tokenizer_spm does it: spaces become U+2581 ("▁"), the text starts as one
// symbol per UTF-8 character, and the adjacent pair whose concatenation is a token with the
// highest score is merged (ties: leftmost first) until no adjacent pair forms a token. A symbol
// left that is not a token is written as its bytes' "<0xXX>" tokens (byte fallback; <unk> when the
// vocabulary has no byte tokens). Merging two adjacent symbols always gives a contiguous span of
// the escaped text, so candidates are looked up as string views: nothing is allocated per merge.
//
// Ill-formed UTF-8 is split by the Unicode "maximal subpart" rule (utf8.hpp) instead of by the
// lead byte's length as llama.cpp does; for well-formed text the two are the same, and ill-formed
// bytes always end up as byte tokens, so decoding gives the input bytes back.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/text/utf8.hpp"
#include "minigpt/text/vocab.hpp"
#include "minigpt/text/vocab_index.hpp"

namespace minigpt::text_detail {

inline constexpr std::string_view k_spm_space = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

class spm_encoder {
public:
    spm_encoder() = default;

    // `usable[id]` says whether plain text may produce token id (normal tokens, not control ones).
    spm_encoder(const vocab_data& v, const string_index& index, const std::vector<std::uint8_t>& usable)
        : index_(&index), usable_(&usable), unk_id_(v.unk_id) {
        scores_.assign(v.tokens.size(), 0.0f);
        if (!v.scores.empty()) scores_ = v.scores;
        for (int b = 0; b < 256; ++b) {
            const std::int32_t id = index.find(detail::byte_token_text(b));
            byte_token_[static_cast<std::size_t>(b)] = id >= 0 ? id : unk_id_;
        }
        split_at_words_ = true;
        for (std::size_t id = 0; id < v.tokens.size() && split_at_words_; ++id) {
            if (!usable[id]) continue;
            const std::string& t = v.tokens[id];
            for (std::size_t p = t.find(k_spm_space, 1); p != std::string::npos; p = t.find(k_spm_space, p + 1))
                if (p < k_spm_space.size() || t.compare(p - k_spm_space.size(), k_spm_space.size(), k_spm_space) != 0) {
                    split_at_words_ = false;
                    break;
                }
        }
    }

    // Appends the tokens of a text fragment (no special tokens in it) to out; `space_prefix`
    // prepends the "▁" that SentencePiece adds at the start of a text.
    void encode(std::string_view text, bool space_prefix, std::vector<std::int32_t>& out) const {
        std::string escaped;
        escaped.reserve(text.size() + text.size() / 2 + 3);
        if (space_prefix) escaped += k_spm_space;
        for (char c : text) {
            if (c == ' ') escaped += k_spm_space;
            else escaped += c;
        }
        if (escaped.empty()) return;

        std::vector<symbol> s;
        std::vector<candidate> heap;
        if (!split_at_words_) {
            encode_span(escaped, 0, escaped.size(), s, heap, out);
            return;
        }
        // A "▁" after another character starts a new word (see split_at_words_).
        word_cache cache;
        auto encode_word = [&](std::size_t begin, std::size_t end) {
            const std::string_view word = std::string_view(escaped).substr(begin, end - begin);
            if (cache.repeat(word, out)) return;
            const std::size_t first = out.size();
            encode_span(escaped, begin, end, s, heap, out);
            cache.insert(word, first, out.size() - first);
        };
        std::size_t begin = 0;
        const std::string_view e = escaped;
        for (std::size_t p = e.find(k_spm_space, 1); p != std::string_view::npos; p = e.find(k_spm_space, p + 1)) {
            const bool after_space = p >= k_spm_space.size() && e.compare(p - k_spm_space.size(), k_spm_space.size(), k_spm_space) == 0;
            if (!after_space) {
                encode_word(begin, p);
                begin = p;
            }
        }
        encode_word(begin, escaped.size());
    }

private:
    struct symbol {
        std::int32_t prev;    // linked list over the text's symbols; -1 at the ends
        std::int32_t next;
        std::uint32_t start;  // bytes [start, start + length) of the escaped text; length 0 once merged away
        std::uint32_t length;
    };
    struct candidate {
        float score;
        std::int32_t left;
        std::uint32_t length;  // bytes of the merged text
        // Heap order: highest score first, then leftmost.
        bool operator<(const candidate& o) const { return score != o.score ? score < o.score : left > o.left; }
    };

    // The merge loop over bytes [begin, end) of the escaped text.
    void encode_span(const std::string& escaped, std::size_t begin, std::size_t end, std::vector<symbol>& s,
                     std::vector<candidate>& heap, std::vector<std::int32_t>& out) const {
        if (begin >= end) return;
        s.clear();
        for (std::size_t pos = begin; pos < end;) {
            const auto d = utf8::decode(reinterpret_cast<const unsigned char*>(escaped.data()) + pos, end - pos);
            const auto i = static_cast<std::int32_t>(s.size());
            s.push_back({i - 1, i + 1, static_cast<std::uint32_t>(pos), d.length});
            pos += d.length;
        }
        s.back().next = -1;

        heap.clear();
        for (std::int32_t i = 0; i + 1 < static_cast<std::int32_t>(s.size()); ++i) try_pair(escaped, s, heap, i, false);
        std::make_heap(heap.begin(), heap.end());
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end());
            const candidate c = heap.back();
            heap.pop_back();
            symbol& left = s[static_cast<std::size_t>(c.left)];
            if (left.length == 0 || left.next < 0) continue;
            symbol& right = s[static_cast<std::size_t>(left.next)];
            // Symbols only grow, so a candidate whose two sides no longer add up to its length is stale.
            if (right.length == 0 || left.length + right.length != c.length) continue;
            left.length += right.length;
            right.length = 0;
            left.next = right.next;
            if (right.next >= 0) s[static_cast<std::size_t>(right.next)].prev = c.left;
            if (left.prev >= 0) try_pair(escaped, s, heap, left.prev, true);
            try_pair(escaped, s, heap, c.left, true);
        }

        for (std::int32_t i = 0; i >= 0; i = s[static_cast<std::size_t>(i)].next) {
            const symbol& sym = s[static_cast<std::size_t>(i)];
            const std::int32_t id = find_usable(std::string_view(escaped).substr(sym.start, sym.length));
            if (id >= 0) {
                out.push_back(id);
                continue;
            }
            for (std::uint32_t k = sym.start; k < sym.start + sym.length; ++k) {
                const std::int32_t b = byte_token_[static_cast<unsigned char>(escaped[k])];
                if (b >= 0) out.push_back(b);
            }
        }
    }

    std::int32_t find_usable(std::string_view text) const {
        const std::int32_t id = index_->find(text);
        return id >= 0 && (*usable_)[static_cast<std::size_t>(id)] ? id : -1;
    }

    void try_pair(const std::string& text, const std::vector<symbol>& s, std::vector<candidate>& heap,
                  std::int32_t left, bool keep_heap) const {
        const symbol& l = s[static_cast<std::size_t>(left)];
        if (l.next < 0) return;
        const std::uint32_t length = l.length + s[static_cast<std::size_t>(l.next)].length;
        const std::int32_t id = find_usable(std::string_view(text).substr(l.start, length));
        if (id < 0) return;
        heap.push_back({scores_[static_cast<std::size_t>(id)], left, length});
        if (keep_heap) std::push_heap(heap.begin(), heap.end());
    }

    const string_index* index_ = nullptr;
    const std::vector<std::uint8_t>* usable_ = nullptr;
    std::int32_t unk_id_ = -1;
    std::vector<float> scores_;                   // (n_vocab)
    std::array<std::int32_t, 256> byte_token_{};  // "<0xXX>" token of each byte, else <unk>, else -1
    // True when no usable token has a "▁" right after another character (SentencePiece's default
    // split_by_whitespace vocabularies, Llama's included). Then no merge can cross the start of a
    // "▁"-word, merges in different words never interact, and encoding word by word gives exactly
    // the whole-text result with small heaps instead of one spanning the text.
    bool split_at_words_ = false;
};

}  // namespace minigpt::text_detail
