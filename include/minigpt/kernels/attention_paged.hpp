// Causal grouped-query attention over a paged KV cache (model/paged_kv_cache.hpp): the keys
// and values of a sequence sit in fixed-size blocks of positions scattered over one pool, and
// a block table per sequence says where. Each query token carries its sequence's table.
//
// Layouts (row-major, outermost first):
//   q, out:   (n_tokens, n_heads*head_dim) f32, as attention.hpp
//   k, v:     (n_blocks*block_size, n_kv_heads*head_dim) f32 or f16 bits: the pool of one layer
//   tables[t]: block ids of token t's sequence; logical position j of that sequence sits in
//             pool row tables[t][j / block_size] * block_size + j % block_size
// The mathematics is that of attention.hpp (same scale, soft-cap, window, GQA grouping, online
// softmax), and so are the kernels for scores and value accumulation; only the walk over the
// keys differs: one online-softmax step still covers up to k_attn_block logical keys, gathered
// from the physical blocks it spans (a step ends on a block boundary, so every step is a few
// whole blocks), which keeps the rescaling as rare as on the contiguous path. The contiguous
// path in attention.hpp is untouched. ref::attention_paged gathers each token's rows into a
// contiguous copy and runs ref::attention on it (double precision).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "minigpt/kernels/attention.hpp"
#include "minigpt/simd/prefetch.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"   // GCC 12 false positive in AVX-512 intrinsics,
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see simd/vector_math.hpp
#endif

namespace minigpt::kernels {

// One layer's pool of K/V rows and the block table of each query token's sequence.
struct paged_kv {
    const void* k = nullptr;                            // (n_blocks*block_size, n_kv_heads*head_dim)
    const void* v = nullptr;                            // (n_blocks*block_size, n_kv_heads*head_dim)
    std::int64_t block_size = 0;                        // positions per block
    std::int64_t n_blocks = 0;                          // blocks in the pool
    const std::span<const std::int32_t>* tables = nullptr;  // (n_tokens) the block table of token t's sequence
};

namespace detail {

inline void check_paged_attention(const attention_params& p, const paged_kv& kv, const float* q, const float* out,
                                  std::int64_t n_tokens, const char* fn) {
    const std::string f(fn);
    if (p.token_kv) throw error(f + ": token_kv must be null (the block tables say where each token's keys are)");
    if (kv.block_size <= 0 || kv.n_blocks <= 0)
        throw shape_error(f + ": block_size and n_blocks must be > 0, got " + std::to_string(kv.block_size) + " and " +
                          std::to_string(kv.n_blocks));
    attention_params shape = p;  // the shared checks (heads, positions, q/out), over the pool's first rows
    shape.k = kv.k;
    shape.v = kv.v;
    check_attention(shape, q, out, n_tokens, fn);
    if (n_tokens == 0) return;
    if (!kv.tables) throw error(f + ": null block tables");
    const auto pool_rows = checked_mul(static_cast<std::uint64_t>(kv.n_blocks), static_cast<std::uint64_t>(kv.block_size), "KV pool size");
    const std::uint64_t pool_bytes = checked_mul(checked_mul(pool_rows, static_cast<std::uint64_t>(p.n_kv_heads * p.head_dim), "KV pool size"),
                                                 p.kv_type == dtype::f32 ? 4 : 2, "KV pool size");
    const std::uint64_t q_bytes = static_cast<std::uint64_t>(n_tokens * p.n_heads * p.head_dim) * 4;
    if (ranges_overlap(out, q_bytes, kv.k, pool_bytes) || ranges_overlap(out, q_bytes, kv.v, pool_bytes))
        throw error(f + ": out must not overlap the K/V pool");
    for (std::int64_t t = 0; t < n_tokens; ++t) {
        const auto& table = kv.tables[t];
        const std::int64_t first = p.first_key(t) / kv.block_size, last = p.position(t) / kv.block_size;
        if (last >= static_cast<std::int64_t>(table.size()))
            throw shape_error(f + ": token " + std::to_string(t) + " at position " + std::to_string(p.position(t)) +
                              " needs block " + std::to_string(last) + " but its table has " + std::to_string(table.size()));
        for (std::int64_t b = first; b <= last; ++b) {
            const std::int32_t id = table[static_cast<std::size_t>(b)];
            if (id < 0 || id >= kv.n_blocks)
                throw shape_error(f + ": token " + std::to_string(t) + ": block id " + std::to_string(id) + " outside [0, " +
                                  std::to_string(kv.n_blocks) + ")");
        }
    }
}

// Requests into L2 for `width` columns (from base) of the n consecutive pool rows from `row`.
template <class KV>
inline void prefetch_rows(const KV* base, std::int64_t kv_dim, std::int64_t row, std::int64_t n, std::int64_t width) {
    const auto bytes = static_cast<std::uintptr_t>(width) * sizeof(KV);
    for (std::int64_t r = 0; r < n; ++r) {
        const auto first = reinterpret_cast<std::uintptr_t>(base + (row + r) * kv_dim);
        for (std::uintptr_t line = first & ~std::uintptr_t{63}; line < first + bytes; line += 64)
            simd::prefetch_l2(reinterpret_cast<const void*>(line));
    }
}

// Query heads of consecutive KV heads handled together by one work item (at most).
inline constexpr std::int64_t k_paged_max_queries = 16;

// attn_rows over keys [lo, hi) of one sequence given by its block table, for n_q (<=
// k_paged_max_queries) queries stored back to back from q (and o), head_dim apart, of which
// each run of q_per_kv shares a KV head: query g reads the KV head at column (g / q_per_kv) *
// head_dim from k and v, which point at the first KV head's columns of pool row 0, rows kv_dim
// apart. The online softmax may resume and stop part-way: with m0/l0, o holds the unnormalised
// sums of earlier keys whose running maximum and denominator are m0/l0 (n_q each); with m1/l1,
// the state is stored there and o left unnormalised.
// All the queries walk the keys together, step by step, so a step's rows are read whole (every
// KV head of the item) and in pool order: a decode token of GPT-2 takes all 12 heads at once and
// streams 1,536-byte rows, where one head at a time fetched a 128-byte slice per row (a strided
// pattern the hardware prefetchers did not follow; see docs/benchmarks.md for the figures).
template <class KV>
inline void attn_rows_paged(const float* q, std::int64_t n_q, std::int64_t q_per_kv, const KV* k, const KV* v, std::int64_t kv_dim,
                            std::span<const std::int32_t> table, std::int64_t block_size, std::int64_t lo, std::int64_t hi,
                            std::int64_t head_dim, float scale, float softcap, float* o, const float* m0 = nullptr,
                            const float* l0 = nullptr, float* m1 = nullptr, float* l1 = nullptr) {
    using B = simd::f32_batch;
    constexpr std::int64_t L = static_cast<std::int64_t>(simd::f32_lanes);
    // (n_q, k_attn_block + L) scores of one step: a chunk that starts at an offset that is not a
    // multiple of L writes up to L - 1 scores past its end (attn_scores works in whole batches);
    // the next chunk overwrites them.
    alignas(64) float s[k_paged_max_queries][k_attn_block + L];
    float m[k_paged_max_queries], l[k_paged_max_queries], rescale[k_paged_max_queries];
    bool live[k_paged_max_queries];
    const std::int64_t width = (n_q + q_per_kv - 1) / q_per_kv * head_dim;  // columns of a row the item reads
    auto kv_col = [&](std::int64_t g) { return g / q_per_kv * head_dim; };
    const float ninf = -std::numeric_limits<float>::infinity();
    if (m0) {
        std::copy(m0, m0 + n_q, m);
        std::copy(l0, l0 + n_q, l);
    } else {
        std::fill(o, o + n_q * head_dim, 0.0f);
        std::fill(m, m + n_q, ninf);
        std::fill(l, l + n_q, 0.0f);
    }
    // Segment [j, end) of a step lies in one block, or in blocks that follow each other in the pool
    // (a prompt prefilled at once takes consecutive free blocks), so its rows are contiguous.
    auto pool_row = [&](std::int64_t j) {
        return static_cast<std::int64_t>(table[static_cast<std::size_t>(j / block_size)]) * block_size + j % block_size;
    };
    auto segment_end = [&](std::int64_t j, std::int64_t j1) {
        std::int64_t b = j / block_size, end = (b + 1) * block_size;
        while (end < j1 && table[static_cast<std::size_t>(b + 1)] == table[static_cast<std::size_t>(b)] + 1) {
            ++b;
            end += block_size;
        }
        return std::min(j1, end);
    };
    auto step_end = [&](std::int64_t j0) {
        std::int64_t j1 = std::min(hi, j0 + k_attn_block);
        if (j1 < hi && j1 / block_size * block_size > j0) j1 = j1 / block_size * block_size;  // end on a block boundary
        return j1;
    };
    // A step's keys are visited in chunks of up to L rows (within a segment): every query over a
    // chunk of K rows, then (after the softmax) every query over the chunk's V rows. While query g
    // works on a chunk, its KV head's slice of the next chunk in that order is requested into L2:
    // the hardware prefetchers do not run ahead of this pattern (rows are read a head's slice at a
    // time, and blocks scatter), and spreading the requests over the heads keeps them from
    // arriving in bursts (docs/benchmarks.md, "Prefetches that reach the binary").
    struct chunk_rows {
        const KV* base;
        std::int64_t row, n;  // pool rows [row, row + n), all in one segment
    };
    auto chunk_at = [&](const KV* base, std::int64_t a, std::int64_t bound) {  // the chunk for_chunks makes at a
        return a < bound ? chunk_rows{base, pool_row(a), std::min(L, segment_end(a, bound) - a)} : chunk_rows{base, 0, 0};
    };
    auto prefetch_chunk = [&](const chunk_rows& next, std::int64_t g) {
        if (g % q_per_kv == 0) prefetch_rows(next.base + kv_col(g), kv_dim, next.row, next.n, head_dim);
    };
    auto for_chunks = [&](std::int64_t j0, std::int64_t j1, auto&& f) {  // f(first key, keys, pool row of the first)
        for (std::int64_t j = j0; j < j1;) {
            const std::int64_t end = segment_end(j, j1), row = pool_row(j);
            for (std::int64_t c = j; c < end; c += L) f(c, std::min(L, end - c), row + (c - j));
            j = end;
        }
    };
    const chunk_rows first = chunk_at(k, lo, step_end(lo));  // every KV head of the item
    prefetch_rows(k, kv_dim, first.row, first.n, width);
    for (std::int64_t j0 = lo; j0 < hi;) {
        const std::int64_t j1 = step_end(j0);
        const std::int64_t nb = j1 - j0;
        for_chunks(j0, j1, [&](std::int64_t c, std::int64_t n, std::int64_t row) {
            const chunk_rows next = c + n == j1 ? chunk_at(v, j0, j1) : chunk_at(k, c + n, j1);  // then the step's V rows
            for (std::int64_t g = 0; g < n_q; ++g) {
                prefetch_chunk(next, g);
                attn_scores(q + g * head_dim, k + row * kv_dim + kv_col(g), kv_dim, n, head_dim, scale, s[g] + (c - j0));
            }
        });
        if (softcap > 0.0f)
            for (std::int64_t g = 0; g < n_q; ++g) softcap_scores(s[g], nb, softcap);
        for (std::int64_t g = 0; g < n_q; ++g) {  // the online-softmax update of attention.hpp's attn_rows
            float* sg = s[g];
            const float bm = max_ignore_nan(sg, nb);
            live[g] = bm != ninf;
            if (!live[g]) continue;
            const float m_new = std::max(m[g], bm);
            rescale[g] = simd::exp_scalar(m[g] - m_new);
            const B mv(m_new);
            B sum(0.0f);
            std::int64_t j = 0;
            for (; j + L <= nb; j += L) {
                const B e = simd::exp_batch(B::load_aligned(sg + j) - mv);
                e.store_aligned(sg + j);
                sum += e;
            }
            if (j < nb) {
                const auto rest = static_cast<std::size_t>(nb - j);
                const B e = simd::exp_batch(simd::load_partial(sg + j, rest, ninf) - mv);
                e.store_aligned(sg + j);
                sum += e;
            }
            l[g] = l[g] * rescale[g] + simd::hsum(sum);
            m[g] = m_new;
        }
        for_chunks(j0, j1, [&](std::int64_t c, std::int64_t n, std::int64_t row) {
            const chunk_rows next = c + n == j1 ? chunk_at(k, j1, step_end(j1)) : chunk_at(v, c + n, j1);  // then the next step's K rows
            for (std::int64_t g = 0; g < n_q; ++g) {
                prefetch_chunk(next, g);
                if (live[g])  // the rescale applies once per step, with its first chunk
                    attn_accumulate(o + g * head_dim, s[g] + (c - j0), v + row * kv_dim + kv_col(g), kv_dim, n, head_dim, c == j0 ? rescale[g] : 1.0f);
            }
        });
        j0 = j1;
    }
    if (m1) {
        std::copy(m, m + n_q, m1);
        std::copy(l, l + n_q, l1);
        return;
    }
    for (std::int64_t g = 0; g < n_q; ++g) {
        const float inv = 1.0f / l[g];
        for (std::int64_t d = 0; d < head_dim; ++d) o[g * head_dim + d] *= inv;
    }
}

// Below this many shared keys, attending over a shared prefix together is not worth the gather.
inline constexpr std::int64_t k_min_shared_keys = 32;

// Tokens of different sequences whose block tables start with the same blocks (forks of one
// prompt: seq_cp shares the parent's blocks) and that attend from position 0 (no window): their
// shared keys are read once for all of them. Fills `members` with the groups' tokens, one token
// per sequence (a sequence is its table's storage), `groups` with (first member, end, shared
// keys) and shared[t] with the keys token t's group covers (0: none). Every group has at least
// two tokens and k_min_shared_keys keys, and stops short of each member's own position, whose
// block is never shared (a sequence writes only into blocks it alone holds).
struct fork_group {
    std::size_t begin, end;   // its tokens: members[begin, end)
    std::int64_t n_shared;    // keys [0, n_shared) shared by all of them
};
inline void find_fork_groups(const attention_params& p, const paged_kv& kv, std::int64_t n_tokens, std::vector<std::int64_t>& members,
                             std::vector<fork_group>& groups, std::vector<std::int64_t>& shared) {
    members.clear();
    groups.clear();
    shared.assign(static_cast<std::size_t>(n_tokens), 0);
    if (p.window > 0 || n_tokens < 2) return;
    auto table = [&](std::int64_t t) { return kv.tables[t]; };
    std::vector<std::int64_t>& order = members;  // sorted candidates, compacted into the groups below
    for (std::int64_t t = 0; t < n_tokens; ++t)
        if (p.position(t) >= k_min_shared_keys && !table(t).empty()) order.push_back(t);
    std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
        const auto ta = table(a), tb = table(b);
        if (ta[0] != tb[0]) return ta[0] < tb[0];
        if (ta.data() != tb.data()) return std::less<const std::int32_t*>()(ta.data(), tb.data());
        return a < b;
    });
    std::size_t out = 0;
    for (std::size_t i = 0; i < order.size();) {
        std::size_t j = i;
        while (j < order.size() && table(order[j])[0] == table(order[i])[0]) ++j;
        // One token per sequence: the first of each run of equal tables.
        const std::size_t begin = out;
        for (std::size_t r = i; r < j; ++r)
            if (r == i || table(order[r]).data() != table(order[r - 1]).data()) order[out++] = order[r];
        const auto first = table(order[begin]);
        std::int64_t n_blocks = static_cast<std::int64_t>(first.size()), n_shared = std::numeric_limits<std::int64_t>::max();
        for (std::size_t r = begin; r < out; ++r) {
            const auto tr = table(order[r]);
            std::int64_t b = 0;
            while (b < n_blocks && b < static_cast<std::int64_t>(tr.size()) && tr[static_cast<std::size_t>(b)] == first[static_cast<std::size_t>(b)]) ++b;
            n_blocks = b;
            n_shared = std::min(n_shared, p.position(order[r]));  // never a member's own position
        }
        n_shared = std::min(n_shared, n_blocks * kv.block_size);
        if (out - begin >= 2 && n_shared >= k_min_shared_keys) {
            groups.push_back({begin, out, n_shared});
            for (std::size_t r = begin; r < out; ++r) shared[static_cast<std::size_t>(order[r])] = n_shared;
        } else {
            out = begin;  // not worth it: these tokens attend alone
        }
        i = j;
    }
    members.resize(out);
}

template <class KV>
inline void attention_paged_impl(const attention_params& p, const paged_kv& kv, const float* q, float* out, std::int64_t n_tokens) {
    const std::int64_t n_heads = p.n_heads, n_kv_heads = p.n_kv_heads, head_dim = p.head_dim;
    const std::int64_t q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
    const std::int64_t group = n_heads / n_kv_heads;
    const KV* k = static_cast<const KV*>(kv.k);
    const KV* v = static_cast<const KV*>(kv.v);
    // Phase 1, forks of one prompt: the queries of every member of a group (all heads of one KV
    // head, up to k_attn_max_heads at a time) go over the shared keys together, so those rows are
    // read once per group instead of once per token; each query's softmax state (running maximum,
    // denominator, unnormalised sums in out) is kept for phase 2. The scratch is the calling
    // thread's, named through a reference so the worker threads see that one.
    struct item {
        std::size_t g;
        std::int64_t kvh, q0;  // queries q0.. of the group's (member, head of kvh) list
    };
    struct scratch {
        std::vector<std::int64_t> members, shared;  // see find_fork_groups
        std::vector<fork_group> groups;
        std::vector<item> items;
        std::vector<float> state;  // (n_tokens, n_heads, 2): running maximum and denominator of each query
    };
    thread_local scratch scratch_of_thread;
    scratch& sc = scratch_of_thread;
    find_fork_groups(p, kv, n_tokens, sc.members, sc.groups, sc.shared);
    if (!sc.groups.empty()) {
        sc.state.resize(static_cast<std::size_t>(n_tokens * n_heads * 2));
        sc.items.clear();
        double work = 0.0;
        for (std::size_t gi = 0; gi < sc.groups.size(); ++gi) {
            const auto n_q = static_cast<std::int64_t>(sc.groups[gi].end - sc.groups[gi].begin) * group;
            for (std::int64_t kvh = 0; kvh < n_kv_heads; ++kvh)
                for (std::int64_t q0 = 0; q0 < n_q; q0 += k_attn_max_heads) sc.items.push_back({gi, kvh, q0});
            work += static_cast<double>(sc.groups[gi].n_shared) * static_cast<double>(n_q * n_kv_heads * head_dim);
        }
        const int nt1 = work < 65536.0 ? 1 : resolve_threads(p.n_threads);
        parallel_for(static_cast<std::int64_t>(sc.items.size()), nt1, [&](std::int64_t begin, std::int64_t end) {
            constexpr std::int64_t max_inline_dim = 256;
            alignas(64) float qs[k_attn_max_heads * max_inline_dim], os[k_attn_max_heads * max_inline_dim];  // (n_q, head_dim) each
            std::vector<float> heap;  // the same two buffers for a wider head
            float* qb = qs;
            float* ob = os;
            if (head_dim > max_inline_dim) {
                heap.resize(static_cast<std::size_t>(2 * k_attn_max_heads * head_dim));
                qb = heap.data();
                ob = qb + k_attn_max_heads * head_dim;
            }
            float m1[k_attn_max_heads], l1[k_attn_max_heads];
            for (std::int64_t i = begin; i < end; ++i) {
                const item& it = sc.items[static_cast<std::size_t>(i)];
                const fork_group& gr = sc.groups[it.g];
                const std::int64_t n_q = std::min(k_attn_max_heads, static_cast<std::int64_t>(gr.end - gr.begin) * group - it.q0);
                auto token_of = [&](std::int64_t qi) { return sc.members[gr.begin + static_cast<std::size_t>((it.q0 + qi) / group)]; };
                auto head_of = [&](std::int64_t qi) { return it.kvh * group + (it.q0 + qi) % group; };
                for (std::int64_t qi = 0; qi < n_q; ++qi) {
                    const float* src = q + token_of(qi) * q_dim + head_of(qi) * head_dim;
                    std::copy(src, src + head_dim, qb + qi * head_dim);
                }
                attn_rows_paged(qb, n_q, n_q, k + it.kvh * head_dim, v + it.kvh * head_dim, kv_dim, kv.tables[sc.members[gr.begin]],
                                kv.block_size, 0, gr.n_shared, head_dim, p.scale, p.softcap, ob, nullptr, nullptr, m1, l1);
                for (std::int64_t qi = 0; qi < n_q; ++qi) {
                    const std::int64_t t = token_of(qi), h = head_of(qi);
                    std::copy(ob + qi * head_dim, ob + (qi + 1) * head_dim, out + t * q_dim + h * head_dim);
                    sc.state[static_cast<std::size_t>((t * n_heads + h) * 2)] = m1[qi];
                    sc.state[static_cast<std::size_t>((t * n_heads + h) * 2 + 1)] = l1[qi];
                }
            }
        });
    }
    // Phase 2: every token over its own keys (after its group's shared ones, resuming their state).
    // An item is one token and the query heads of up to k_paged_max_queries / group consecutive
    // KV heads (whole rows of GPT-2's cache), or part of one KV group when a group alone is larger;
    // items are halved until every thread has two (a single decode token). Tokens are dealt in
    // zig-zag order as in attention_impl; small passes stay on the calling thread.
    double pairs = 0.0;
    for (std::int64_t t = 0; t < n_tokens; ++t)
        pairs += static_cast<double>(p.position(t) - std::max(p.first_key(t), sc.shared[static_cast<std::size_t>(t)]) + 1);
    const int nt = pairs * static_cast<double>(n_heads * head_dim) < 65536.0 ? 1 : resolve_threads(p.n_threads);
    std::int64_t q_per = std::min(group, k_paged_max_queries);                        // queries per item within a KV head
    std::int64_t kv_per = q_per == group ? std::min(n_kv_heads, k_paged_max_queries / group) : 1;  // KV heads per item
    auto n_items_per_token = [&] { return (n_kv_heads + kv_per - 1) / kv_per * ((group + q_per - 1) / q_per); };
    while (n_tokens * n_items_per_token() < 2 * nt && (kv_per > 1 || q_per > 1)) {
        if (kv_per > 1) kv_per = (kv_per + 1) / 2;
        else q_per = (q_per + 1) / 2;
    }
    const std::int64_t q_chunks = (group + q_per - 1) / q_per;  // items per KV head (kv_per is 1 when > 1)
    const std::int64_t per_token = n_items_per_token();
    struct work {
        std::int64_t t, kvh, h0, n_q;  // token, first KV head, first query head, queries
    };
    auto item_at = [&](std::int64_t i) {
        const std::int64_t slot = i / per_token, r = i % per_token;
        const std::int64_t t = slot % 2 == 0 ? slot / 2 : n_tokens - 1 - slot / 2;
        const std::int64_t kvh = r / q_chunks * kv_per, h0 = kvh * group + r % q_chunks * q_per;
        const std::int64_t n_q = kv_per > 1 ? std::min(kv_per, n_kv_heads - kvh) * group : std::min(q_per, (kvh + 1) * group - h0);
        return work{t, kvh, h0, n_q};
    };
    parallel_for(n_tokens * per_token, nt, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) {
            const work w = item_at(i);
            const std::int64_t t = w.t, n_shared = sc.shared[static_cast<std::size_t>(t)];
            const std::int64_t q_per_kv = std::min(w.n_q, group);
            const float* qt = q + t * q_dim + w.h0 * head_dim;
            float* ot = out + t * q_dim + w.h0 * head_dim;
            if (n_shared == 0) {
                attn_rows_paged(qt, w.n_q, q_per_kv, k + w.kvh * head_dim, v + w.kvh * head_dim, kv_dim, kv.tables[t], kv.block_size,
                                p.first_key(t), p.position(t) + 1, head_dim, p.scale, p.softcap, ot);
                continue;
            }
            float m0[k_paged_max_queries], l0[k_paged_max_queries];
            for (std::int64_t g = 0; g < w.n_q; ++g) {
                m0[g] = sc.state[static_cast<std::size_t>((t * n_heads + w.h0 + g) * 2)];
                l0[g] = sc.state[static_cast<std::size_t>((t * n_heads + w.h0 + g) * 2 + 1)];
            }
            attn_rows_paged(qt, w.n_q, q_per_kv, k + w.kvh * head_dim, v + w.kvh * head_dim, kv_dim, kv.tables[t], kv.block_size,
                            n_shared, p.position(t) + 1, head_dim, p.scale, p.softcap, ot, m0, l0);
        }
    });
}

}  // namespace detail

// Causal grouped-query attention with each token's keys found through its block table; p gives
// the shapes, scale, cap, window and positions as for attention() (p.k, p.v and p.token_kv are
// not used). out must not overlap q or the pool.
inline void attention_paged(const attention_params& p, const paged_kv& kv, const float* q, float* out, std::int64_t n_tokens) {
    detail::check_paged_attention(p, kv, q, out, n_tokens, "attention_paged");
    if (n_tokens == 0) return;
    if (p.kv_type == dtype::f32) detail::attention_paged_impl<float>(p, kv, q, out, n_tokens);
    else detail::attention_paged_impl<std::uint16_t>(p, kv, q, out, n_tokens);
}

namespace ref {

// Each token's keys and values copied, in logical order, into a contiguous (max position + 1,
// kv_dim) array, then ref::attention with per-token views of those arrays.
inline void attention_paged(const attention_params& p, const paged_kv& kv, const float* q, float* out, std::int64_t n_tokens) {
    detail::check_paged_attention(p, kv, q, out, n_tokens, "ref::attention_paged");
    const std::int64_t kv_dim = p.n_kv_heads * p.head_dim;
    const std::size_t row_bytes = static_cast<std::size_t>(kv_dim) * (p.kv_type == dtype::f32 ? 4 : 2);
    std::vector<std::vector<std::byte>> ks(static_cast<std::size_t>(n_tokens)), vs(static_cast<std::size_t>(n_tokens));
    std::vector<kv_view> views(static_cast<std::size_t>(n_tokens));  // (n_tokens)
    std::int64_t max_rows = 0;  // every copy as long as the longest: ref::attention checks that many rows
    for (std::int64_t t = 0; t < n_tokens; ++t) max_rows = std::max(max_rows, p.position(t) + 1);
    for (std::int64_t t = 0; t < n_tokens; ++t) {
        auto& kt = ks[static_cast<std::size_t>(t)];
        auto& vt = vs[static_cast<std::size_t>(t)];
        kt.assign(static_cast<std::size_t>(max_rows) * row_bytes, std::byte{0});
        vt.assign(static_cast<std::size_t>(max_rows) * row_bytes, std::byte{0});
        for (std::int64_t j = p.first_key(t); j <= p.position(t); ++j) {
            const std::int64_t row = static_cast<std::int64_t>(kv.tables[t][static_cast<std::size_t>(j / kv.block_size)]) * kv.block_size +
                                     j % kv.block_size;
            std::memcpy(kt.data() + static_cast<std::size_t>(j) * row_bytes,
                        static_cast<const std::byte*>(kv.k) + static_cast<std::size_t>(row) * row_bytes, row_bytes);
            std::memcpy(vt.data() + static_cast<std::size_t>(j) * row_bytes,
                        static_cast<const std::byte*>(kv.v) + static_cast<std::size_t>(row) * row_bytes, row_bytes);
        }
        views[static_cast<std::size_t>(t)] = {kt.data(), vt.data()};
    }
    attention_params flat = p;
    flat.token_kv = views.data();
    ref::attention(flat, q, out, n_tokens);
}

}  // namespace ref
}  // namespace minigpt::kernels

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
