// Byte-level BPE (GPT-2 style, `tokenizer.ggml.model = "gpt2"`): the encoder for one piece of text.
//
// GPT-2 tokens are strings over a 256-character alphabet that stands for bytes: printable Latin-1
// bytes stand for themselves, the other 68 bytes for U+0100.. in order (gpt2_byte_to_cp), so every
// byte string has a spelling and decoding is exact. Encoding: the pre-tokenizer splits the text into
// words (pretokenizer.hpp: the vocabulary's tokenizer.ggml.pre); each word starts as one symbol per byte and the adjacent pair with
// the lowest merge rank is merged until no listed merge applies (ties: leftmost first, as in
// llama.cpp and Hugging Face). Symbols are token ids and merges a (left id, right id) table, so the
// loop never builds or hashes strings; a heap with lazy deletion over a linked list of symbols keeps
// long words (a paragraph of Chinese is one word) at O(n log n). Within one encode call, a word
// seen before is copied from its first encoding. With ignore_merges (llama3, tekken) a word that is
// itself a token is emitted as that token without merging, as llama.cpp does.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/text/pretokenizer.hpp"
#include "minigpt/text/utf8.hpp"
#include "minigpt/text/vocab.hpp"
#include "minigpt/text/vocab_index.hpp"

namespace minigpt::text_detail {

// GPT-2's bytes_to_unicode(): the code point that spells each byte.
inline const std::array<char32_t, 256>& gpt2_byte_to_cp() {
    static const std::array<char32_t, 256> table = [] {
        std::array<char32_t, 256> t{};
        char32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            t[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
        }
        return t;
    }();
    return table;
}

// The byte a code point spells, or -1 if it is not one of the 256.
inline int gpt2_cp_to_byte(char32_t cp) {
    static const std::array<std::int16_t, 512> table = [] {
        std::array<std::int16_t, 512> t{};
        t.fill(-1);
        const auto& fwd = gpt2_byte_to_cp();
        for (int b = 0; b < 256; ++b) t[fwd[static_cast<std::size_t>(b)]] = static_cast<std::int16_t>(b);
        return t;
    }();
    return cp < 512 ? table[cp] : -1;
}

// Token text -> bytes. Characters outside the byte alphabet (only in odd vocabularies) are kept as UTF-8.
inline std::string gpt2_decode_text(std::string_view token_text) {
    std::string out;
    out.reserve(token_text.size());
    for (std::size_t i = 0; i < token_text.size();) {
        const auto d = utf8::decode(token_text, i);
        const int b = d.state == utf8::status::ok ? gpt2_cp_to_byte(d.cp) : -1;
        if (b >= 0) out.push_back(static_cast<char>(b));
        else out.append(token_text.substr(i, d.length));
        i += d.length;
    }
    return out;
}

class bpe_encoder {
public:
    bpe_encoder() = default;

    // `usable[id]` says whether plain text may produce token id (normal tokens, not control ones).
    bpe_encoder(const vocab_data& v, const string_index& index, const std::vector<std::uint8_t>& usable)
        : n_vocab_(v.n_vocab()), unk_id_(v.unk_id), index_(&index) {
        const unicode::pre_spec spec = unicode::pre_spec_for(v.pre);
        pre_ = unicode::pretokenizer(spec);
        ignore_merges_ = spec.ignore_merges;
        // Strings that are not (usable) tokens but occur in merges get ids from n_vocab up, so
        // chains of merges through them still apply; a final symbol with such an id is written
        // out byte by byte.
        std::unordered_map<std::string, std::int32_t> extra;
        auto id_of = [&](std::string_view s) {
            const std::int32_t id = index.find(s);
            if (id >= 0 && usable[static_cast<std::size_t>(id)]) return id;
            auto [it, inserted] = extra.emplace(std::string(s), n_vocab_ + static_cast<std::int32_t>(extra.size()));
            return it->second;
        };
        const auto& b2c = gpt2_byte_to_cp();
        for (int b = 0; b < 256; ++b) {
            const std::int32_t id = id_of(utf8::encode(b2c[static_cast<std::size_t>(b)]));
            initial_id_[static_cast<std::size_t>(b)] = id;
            byte_token_[static_cast<std::size_t>(b)] = id < n_vocab_ ? id : -1;
        }
        merges_ = pair_index<merge>(v.merges.size());
        std::string joined;
        for (std::size_t rank = 0; rank < v.merges.size(); ++rank) {
            const std::string_view m = v.merges[rank];
            const std::size_t space = m.find(' ', 1);  // from 1: a part may itself start with a space
            if (space == std::string::npos || space + 1 >= m.size())
                throw error("BPE merge " + std::to_string(rank) + " '" + std::string(m) + "' is not two parts separated by a space");
            const std::string_view left = m.substr(0, space), right = m.substr(space + 1);
            joined.assign(left).append(right);
            const std::int32_t l = id_of(left), r = id_of(right), result = id_of(joined);
            merges_.insert(l, r, merge{static_cast<std::int32_t>(rank), result});  // the first listing wins
        }
    }

    // Appends the tokens of a text fragment (no special tokens in it) to out.
    void encode(std::string_view text, std::vector<std::int32_t>& out) const {
        std::vector<symbol> symbols;
        std::vector<candidate> heap;
        word_cache cache;
        std::string spelled;
        pre_.split(text, [&](std::string_view word) {
            if (ignore_merges_ && word.size() > 1) {
                // llama.cpp looks the word up among all tokens, whatever their type.
                spelled.clear();
                const auto& b2c = gpt2_byte_to_cp();
                for (const char c : word) utf8::append(spelled, b2c[static_cast<unsigned char>(c)]);
                if (const std::int32_t id = index_->find(spelled); id >= 0) {
                    out.push_back(id);
                    return;
                }
            }
            if (word.size() == 1) {
                emit(symbol{initial_id_[static_cast<unsigned char>(word[0])], -1, -1, 0, 1}, word, out);
                return;
            }
            if (cache.repeat(word, out)) return;
            const std::size_t first = out.size();
            encode_word(word, symbols, heap, out);
            cache.insert(word, first, out.size() - first);
        });
    }

private:
    struct merge {
        std::int32_t rank;
        std::int32_t result;
    };
    struct symbol {
        std::int32_t id;     // token id, >= n_vocab for a string that is not a token, -2 once merged away
        std::int32_t prev;   // linked list over the word's symbols; -1 at the ends
        std::int32_t next;
        std::uint32_t start; // bytes [start, start + length) of the word
        std::uint32_t length;
    };
    struct candidate {
        std::int32_t rank;
        std::int32_t left;      // symbol index
        std::int32_t left_id;   // ids when pushed: stale once either side changed
        std::int32_t right_id;
        std::int32_t result;
        // Heap order: lowest rank first, then leftmost.
        bool operator<(const candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
    };

    void push_pair(std::vector<symbol>& s, std::vector<candidate>& heap, std::int32_t left) const {
        if (left < 0) return;
        const std::int32_t right = s[static_cast<std::size_t>(left)].next;
        if (right < 0) return;
        const std::int32_t l = s[static_cast<std::size_t>(left)].id, r = s[static_cast<std::size_t>(right)].id;
        if (const merge* m = merges_.find(l, r)) {
            heap.push_back({m->rank, left, l, r, m->result});
            std::push_heap(heap.begin(), heap.end());
        }
    }

    void emit(const symbol& sym, std::string_view word, std::vector<std::int32_t>& out) const {
        if (sym.id >= 0 && sym.id < n_vocab_) {
            out.push_back(sym.id);
            return;
        }
        for (std::uint32_t k = sym.start; k < sym.start + sym.length; ++k) {
            const std::int32_t b = byte_token_[static_cast<unsigned char>(word[k])];
            if (b >= 0) out.push_back(b);
            else if (unk_id_ >= 0) out.push_back(unk_id_);
        }
    }

    void encode_word(std::string_view word, std::vector<symbol>& s, std::vector<candidate>& heap,
                     std::vector<std::int32_t>& out) const {
        const auto n = static_cast<std::int32_t>(word.size());
        s.resize(static_cast<std::size_t>(n));
        for (std::int32_t i = 0; i < n; ++i)
            s[static_cast<std::size_t>(i)] = {initial_id_[static_cast<unsigned char>(word[static_cast<std::size_t>(i)])],
                                              i - 1, i + 1 < n ? i + 1 : -1, static_cast<std::uint32_t>(i), 1};
        heap.clear();
        for (std::int32_t i = 0; i + 1 < n; ++i) {
            const std::int32_t l = s[static_cast<std::size_t>(i)].id, r = s[static_cast<std::size_t>(i) + 1].id;
            if (const merge* m = merges_.find(l, r)) heap.push_back({m->rank, i, l, r, m->result});
        }
        std::make_heap(heap.begin(), heap.end());
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end());
            const candidate c = heap.back();
            heap.pop_back();
            symbol& left = s[static_cast<std::size_t>(c.left)];
            if (left.id != c.left_id || left.next < 0) continue;
            symbol& right = s[static_cast<std::size_t>(left.next)];
            if (right.id != c.right_id) continue;
            // Merged text is longer than either side, so a symbol never gets an id back: the id
            // checks above are enough to recognise stale candidates.
            left.id = c.result;
            left.length += right.length;
            left.next = right.next;
            if (right.next >= 0) s[static_cast<std::size_t>(right.next)].prev = c.left;
            right.id = -2;
            push_pair(s, heap, left.prev);
            push_pair(s, heap, c.left);
        }
        for (std::int32_t i = 0; i >= 0; i = s[static_cast<std::size_t>(i)].next) emit(s[static_cast<std::size_t>(i)], word, out);
    }

    std::int32_t n_vocab_ = 0;
    std::int32_t unk_id_ = -1;
    const string_index* index_ = nullptr;  // the tokenizer's; it outlives the encoder
    unicode::pretokenizer pre_;
    bool ignore_merges_ = false;
    std::array<std::int32_t, 256> initial_id_{};  // symbol id of each byte's one-character spelling
    std::array<std::int32_t, 256> byte_token_{};  // the same when it is a token, else -1
    pair_index<merge> merges_;
};

}  // namespace minigpt::text_detail
