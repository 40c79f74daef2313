// Hash tables behind the tokenizers' inner loops: token text -> id, token pair -> merge, and the
// per-call cache of words already encoded.
//
// Encoding looks up millions of short strings and id pairs per second, so these are flat
// open-addressing tables (linear probing, power-of-two capacity, load <= 1/2) rather than
// std::unordered_map: no allocation per lookup, one or two cache lines per probe. Keys of the text
// index are views of strings owned elsewhere (the vocabulary), which must outlive the index.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"

namespace minigpt::text_detail {

// 64-bit hash of a byte string: 8-byte words folded in with multiply-xorshift steps, then a
// final avalanche, so that short keys differing in one byte land far apart.
inline std::uint64_t hash_bytes(const char* p, std::size_t n) noexcept {
    std::uint64_t h = 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(n) * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        std::uint64_t w = 0;
        std::memcpy(&w, p, n);
        h = (h ^ w) * 0x94D049BB133111EBull;
        h ^= h >> 32;
    }
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return h;
}

inline std::uint64_t hash_u64(std::uint64_t x) noexcept {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

inline std::size_t table_capacity(std::size_t n_keys) {
    std::size_t cap = 16;
    while (cap < 2 * n_keys) cap *= 2;
    return cap;
}

// Token text -> id. Ids are small non-negative integers; keys[id] is the text of id.
class string_index {
public:
    string_index() = default;

    // Indexes keys[id] for every id; empty strings are left out. Throws on duplicate text.
    explicit string_index(const std::vector<std::string>& keys) {
        keys_.reserve(keys.size());
        for (const auto& k : keys) keys_.emplace_back(k);
        mask_ = table_capacity(keys.size()) - 1;
        slots_.assign(mask_ + 1, slot{0, -1});
        for (std::size_t id = 0; id < keys_.size(); ++id) {
            const std::string_view k = keys_[id];
            if (k.empty()) continue;
            const std::uint64_t h = hash_bytes(k.data(), k.size());
            for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
                slot& s = slots_[i];
                if (s.id < 0) {
                    s = {static_cast<std::uint32_t>(h >> 32), static_cast<std::int32_t>(id)};
                    break;
                }
                if (s.tag == static_cast<std::uint32_t>(h >> 32) && keys_[static_cast<std::size_t>(s.id)] == k)
                    throw error("vocabulary has the same token text at ids " + std::to_string(s.id) + " and " +
                                std::to_string(id));
            }
        }
    }

    // The id of `text`, or -1.
    std::int32_t find(std::string_view text) const noexcept {
        if (slots_.empty()) return -1;
        const std::uint64_t h = hash_bytes(text.data(), text.size());
        const auto tag = static_cast<std::uint32_t>(h >> 32);
        for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
            const slot& s = slots_[i];
            if (s.id < 0) return -1;
            if (s.tag == tag && keys_[static_cast<std::size_t>(s.id)] == text) return s.id;
        }
    }

private:
    struct slot {
        std::uint32_t tag;  // high half of the hash: most mismatches never touch the key text
        std::int32_t id;    // -1: empty
    };
    std::vector<std::string_view> keys_;  // (n_keys)
    std::vector<slot> slots_;             // (capacity)
    std::size_t mask_ = 0;
};

// (left id, right id) -> value, for BPE merge ranks. Both ids must be non-negative.
template <class Value>
class pair_index {
public:
    pair_index() = default;
    explicit pair_index(std::size_t n_expected) {
        mask_ = table_capacity(n_expected) - 1;
        slots_.assign(mask_ + 1, slot{k_empty, Value{}});
    }

    // Inserts unless the pair is present; returns false (and keeps the old value) if it was.
    bool insert(std::int32_t left, std::int32_t right, const Value& v) {
        const std::uint64_t key = pack(left, right);
        for (std::size_t i = hash_u64(key) & mask_;; i = (i + 1) & mask_) {
            if (slots_[i].key == k_empty) {
                slots_[i] = {key, v};
                return true;
            }
            if (slots_[i].key == key) return false;
        }
    }

    const Value* find(std::int32_t left, std::int32_t right) const noexcept {
        if (slots_.empty()) return nullptr;
        const std::uint64_t key = pack(left, right);
        for (std::size_t i = hash_u64(key) & mask_;; i = (i + 1) & mask_) {
            if (slots_[i].key == key) return &slots_[i].value;
            if (slots_[i].key == k_empty) return nullptr;
        }
    }

private:
    static constexpr std::uint64_t k_empty = ~std::uint64_t{0};
    static std::uint64_t pack(std::int32_t l, std::int32_t r) noexcept {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(l)) << 32) | static_cast<std::uint32_t>(r);
    }
    struct slot {
        std::uint64_t key;  // key and value side by side: a probe touches one cache line
        Value value;
    };
    std::vector<slot> slots_;  // (capacity)
    std::size_t mask_ = 0;
};

// Words already encoded during one encode call (text repeats its words), as (offset, count) of
// their tokens in the output vector. Keys are views of text that lives for the call; the cache
// stops growing at a fixed size to bound memory on huge inputs.
class word_cache {
public:
    // If `word` was seen, appends its tokens again and returns true.
    bool repeat(std::string_view word, std::vector<std::int32_t>& out) const {
        if (slots_.empty()) return false;
        const std::uint64_t h = hash_bytes(word.data(), word.size());
        for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
            const entry& e = slots_[i];
            if (e.word.data() == nullptr) return false;
            if (e.hash == h && e.word == word) {
                const std::size_t old = out.size();
                out.resize(old + e.count);  // copy by index after the resize: the source may move
                std::copy_n(out.begin() + static_cast<std::ptrdiff_t>(e.offset), e.count, out.begin() + static_cast<std::ptrdiff_t>(old));
                return true;
            }
        }
    }

    void insert(std::string_view word, std::size_t offset, std::size_t count) {
        if (size_ >= k_max_entries) return;
        if (2 * (size_ + 1) > slots_.size()) grow();
        place({word, hash_bytes(word.data(), word.size()), offset, count});
        ++size_;
    }

private:
    struct entry {
        std::string_view word;  // data() == nullptr: empty slot
        std::uint64_t hash;
        std::size_t offset, count;
    };
    static constexpr std::size_t k_max_entries = std::size_t{1} << 16;
    void place(const entry& e) {
        for (std::size_t i = e.hash & mask_;; i = (i + 1) & mask_)
            if (slots_[i].word.data() == nullptr) {
                slots_[i] = e;
                return;
            }
    }
    void grow() {
        std::vector<entry> old = std::move(slots_);
        slots_.assign(old.empty() ? 64 : 2 * old.size(), entry{});
        mask_ = slots_.size() - 1;
        for (const entry& e : old)
            if (e.word.data() != nullptr) place(e);
    }
    std::vector<entry> slots_;  // (capacity)
    std::size_t mask_ = 0;
    std::size_t size_ = 0;
};

}  // namespace minigpt::text_detail
