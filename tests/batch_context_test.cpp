// Many sequences at once: the paged attention kernel against a double-precision reference over
// gathered rows, the paged cache's block accounting (fork shares, copy-on-write, seq_rm frees),
// and batch_context's decode against the independent one-sequence path: every sequence decoded
// alone with minigpt::context must give the same logits (F32: within 1e-4) and the same greedy
// tokens, on stories260K, gpt2-tiny and synthesised Gemma 2 (sliding window, soft-caps) and
// Llama (F16 cache) models.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "minigpt/kernels/attention_paged.hpp"
#include "minigpt/model.hpp"
#include "minigpt/model/batch_context.hpp"
#include "minigpt/model/synth.hpp"
#include "test_data.hpp"

namespace minigpt {
namespace {

using test::gaussian;

using minigpt::test::max_abs_diff;

std::int32_t argmax(std::span<const float> v) {
    return static_cast<std::int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// ---- the kernel ----

// (rows, width) random values stored as `type` (F32 or F16): a K or V pool of a paged cache.
std::vector<std::byte> random_rows(dtype type, std::int64_t rows, std::int64_t width, unsigned seed) {
    const auto values = gaussian(rows * width, seed);
    const std::size_t elem = type == dtype::f32 ? 4 : 2;
    std::vector<std::byte> out(static_cast<std::size_t>(rows * width) * elem);
    for (std::int64_t r = 0; r < rows; ++r)
        quant::quantize_row(type, values.data() + r * width, out.data() + static_cast<std::size_t>(r * width) * elem, width);
    return out;
}

struct paged_case {
    dtype kv_type;
    std::int64_t block_size, window;
    float softcap;
};

// The attention shape of a case: scale 1/sqrt(head_dim), the case's cap, window and cache type,
// token t at pos[t], two threads.
kernels::attention_params case_params(const paged_case& pc, std::int64_t n_heads, std::int64_t n_kv_heads, std::int64_t head_dim,
                                      const std::vector<std::int64_t>& pos) {
    kernels::attention_params p;
    p.n_heads = n_heads;
    p.n_kv_heads = n_kv_heads;
    p.head_dim = head_dim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    p.softcap = pc.softcap;
    p.window = pc.window;
    p.kv_type = pc.kv_type;
    p.positions = pos.data();
    p.n_threads = 2;
    return p;
}

TEST(PagedAttention, MatchesReferenceOverScrambledBlocks) {
    const std::int64_t n_heads = 8, n_kv_heads = 2, head_dim = 40, kv_dim = n_kv_heads * head_dim;  // head_dim 40: the tail paths
    for (const paged_case pc : {paged_case{dtype::f32, 4, 0, 0.0f}, paged_case{dtype::f16, 16, 0, 0.0f}, paged_case{dtype::f32, 16, 21, 0.0f},
                                paged_case{dtype::f32, 3, 0, 2.0f}, paged_case{dtype::f16, 32, 50, 1.5f}}) {
        SCOPED_TRACE("block_size " + std::to_string(pc.block_size) + " window " + std::to_string(pc.window));
        const std::vector<std::int64_t> lengths = {37, 5, 300};  // 300 > 2 * k_attn_block: several online steps
        std::int64_t n_blocks = 0;
        for (auto len : lengths) n_blocks += (len + pc.block_size - 1) / pc.block_size;
        n_blocks += 7;  // some blocks nobody uses
        const std::int64_t pool_rows = n_blocks * pc.block_size;
        const auto k = random_rows(pc.kv_type, pool_rows, kv_dim, 1), v = random_rows(pc.kv_type, pool_rows, kv_dim, 2);  // (pool_rows, kv_dim)
        // Scrambled, disjoint block tables.
        std::vector<std::int32_t> ids(static_cast<std::size_t>(n_blocks));
        std::iota(ids.begin(), ids.end(), 0);
        std::shuffle(ids.begin(), ids.end(), std::mt19937(7));
        std::vector<std::vector<std::int32_t>> tables;
        std::size_t next = 0;
        for (auto len : lengths) {
            const auto nb = static_cast<std::size_t>((len + pc.block_size - 1) / pc.block_size);
            tables.emplace_back(ids.begin() + static_cast<std::ptrdiff_t>(next), ids.begin() + static_cast<std::ptrdiff_t>(next + nb));
            next += nb;
        }
        // Sequence 2's first half in consecutive pool blocks (read as one run of rows), the rest scattered.
        for (std::size_t b = 0; b < tables[2].size() / 2; ++b) tables[2][b] = static_cast<std::int32_t>(b + 1);
        // Tokens: a prefill run of sequence 0, one decode token of sequence 1, two of sequence 2.
        std::vector<std::int64_t> pos = {30, 31, 32, 33, 34, 35, 36, 4, 299, 130};
        std::vector<int> seq = {0, 0, 0, 0, 0, 0, 0, 1, 2, 2};
        const auto n = static_cast<std::int64_t>(pos.size());
        std::vector<std::span<const std::int32_t>> token_tables;
        for (int s : seq) token_tables.emplace_back(tables[static_cast<std::size_t>(s)]);
        kernels::attention_params p = case_params(pc, n_heads, n_kv_heads, head_dim, pos);
        const kernels::paged_kv pool{k.data(), v.data(), pc.block_size, n_blocks, token_tables.data()};
        const auto q = gaussian(n * n_heads * head_dim, 3);
        std::vector<float> fast(q.size()), want(q.size());
        kernels::attention_paged(p, pool, q.data(), fast.data(), n);
        kernels::ref::attention_paged(p, pool, q.data(), want.data(), n);
        EXPECT_LT(max_abs_diff(fast, want), 2e-5f);
    }
}

// A work item takes the query heads of several KV heads (whole rows of the cache), part of one
// large KV group, or is split further so that a single token still keeps both threads busy: every
// head of every token must come out right whatever the split. MHA (12 of 12), GQA (15 over 5,
// 32 over 8), and MQA with a group larger than an item (24 over 1: chunks of 16 and 8), for 1, 3
// and 8 tokens of their own sequences.
TEST(PagedAttention, EveryWorkSplitCoversEveryHead) {
    const std::int64_t head_dim = 32, bs = 16;
    for (const auto& [n_heads, n_kv_heads] : {std::pair<std::int64_t, std::int64_t>{12, 12}, {15, 5}, {32, 8}, {24, 1}}) {
        for (const std::int64_t n : {1, 3, 8}) {
            SCOPED_TRACE(std::to_string(n_heads) + " heads over " + std::to_string(n_kv_heads) + ", " + std::to_string(n) + " tokens");
            const std::int64_t kv_dim = n_kv_heads * head_dim, n_keys = 200, per_seq = (n_keys + bs - 1) / bs, n_blocks = n * per_seq;
            const auto k = random_rows(dtype::f16, n_blocks * bs, kv_dim, 11), v = random_rows(dtype::f16, n_blocks * bs, kv_dim, 12);
            std::vector<std::int32_t> ids(static_cast<std::size_t>(n_blocks));
            std::iota(ids.begin(), ids.end(), 0);
            std::shuffle(ids.begin(), ids.end(), std::mt19937(13));
            std::vector<std::span<const std::int32_t>> tables;
            std::vector<std::int64_t> pos;
            for (std::int64_t t = 0; t < n; ++t) {
                tables.emplace_back(ids.data() + t * per_seq, static_cast<std::size_t>(per_seq));
                pos.push_back(n_keys - 1 - t);  // different lengths, two online steps, enough work for two threads
            }
            kernels::attention_params p = case_params({dtype::f16, bs, 0, 0.0f}, n_heads, n_kv_heads, head_dim, pos);
            const kernels::paged_kv pool{k.data(), v.data(), bs, n_blocks, tables.data()};
            const auto q = gaussian(n * n_heads * head_dim, 14);
            std::vector<float> fast(q.size()), want(q.size());
            kernels::attention_paged(p, pool, q.data(), fast.data(), n);
            kernels::ref::attention_paged(p, pool, q.data(), want.data(), n);
            EXPECT_LT(max_abs_diff(fast, want), 2e-5f);
        }
    }
}

// Forks of one prompt (tables that start with the same blocks, then blocks of their own, as seq_cp
// and copy-on-write leave them) attend over the shared blocks together; the result must equal the
// double-precision reference as for any tables. Also in the batch: two tokens of one fork (one
// group member per sequence), a sequence of its own, and GQA heads of 5 forks (20 queries per KV
// head: chunks of 8, 8, 4).
TEST(PagedAttention, ForksSharingPromptBlocksMatchReference) {
    const std::int64_t n_heads = 8, n_kv_heads = 2, head_dim = 40, kv_dim = n_kv_heads * head_dim;
    for (const paged_case pc : {paged_case{dtype::f32, 4, 0, 0.0f}, paged_case{dtype::f16, 16, 0, 0.0f}, paged_case{dtype::f32, 16, 0, 2.0f}}) {
        SCOPED_TRACE("block_size " + std::to_string(pc.block_size) + " softcap " + std::to_string(pc.softcap));
        const std::int64_t bs = pc.block_size, n_prompt = 150, n_blocks = 64;  // 150 > k_attn_block: several online steps shared
        const std::int64_t pool_rows = n_blocks * bs;
        const auto k = random_rows(pc.kv_type, pool_rows, kv_dim, 4), v = random_rows(pc.kv_type, pool_rows, kv_dim, 5);  // (pool_rows, kv_dim)
        // Blocks handed out in a scrambled order: the prompt's full blocks, then per fork its copy of
        // the partial block and blocks for up to 12 more positions.
        std::vector<std::int32_t> ids(static_cast<std::size_t>(n_blocks));
        std::iota(ids.begin(), ids.end(), 0);
        std::shuffle(ids.begin(), ids.end(), std::mt19937(9));
        std::size_t next = 0;
        const auto n_full = static_cast<std::size_t>(n_prompt / bs);
        std::vector<std::int32_t> prompt_blocks(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n_full));
        next = n_full;
        std::vector<std::vector<std::int32_t>> tables;
        const std::vector<std::int64_t> fork_len = {n_prompt + 1, n_prompt + 7, n_prompt + 3, n_prompt + 12, n_prompt + 1};
        for (const auto len : fork_len) {
            std::vector<std::int32_t> t = prompt_blocks;
            while (static_cast<std::int64_t>(t.size()) * bs < len) t.push_back(ids[next++]);
            tables.push_back(std::move(t));
        }
        std::vector<std::int32_t> own;  // a sequence of its own, 60 positions
        while (static_cast<std::int64_t>(own.size()) * bs < 60) own.push_back(ids[next++]);
        tables.push_back(own);
        // Tokens: each fork's newest position, plus fork 1's previous one; the other sequence's last.
        std::vector<std::int64_t> pos;
        std::vector<std::span<const std::int32_t>> token_tables;
        for (std::size_t f = 0; f < fork_len.size(); ++f) {
            pos.push_back(fork_len[f] - 1);
            token_tables.emplace_back(tables[f]);
        }
        pos.push_back(fork_len[1] - 2);
        token_tables.emplace_back(tables[1]);
        pos.push_back(59);
        token_tables.emplace_back(tables.back());
        const auto n = static_cast<std::int64_t>(pos.size());
        kernels::attention_params p = case_params(pc, n_heads, n_kv_heads, head_dim, pos);
        const kernels::paged_kv pool{k.data(), v.data(), bs, n_blocks, token_tables.data()};
        // The five forks form one group over the prompt's full blocks; the rest attend alone.
        std::vector<std::int64_t> members, shared;
        std::vector<kernels::detail::fork_group> groups;
        kernels::detail::find_fork_groups(p, pool, n, members, groups, shared);
        ASSERT_EQ(groups.size(), 1u);
        EXPECT_EQ(groups[0].end - groups[0].begin, 5u);
        EXPECT_EQ(groups[0].n_shared, static_cast<std::int64_t>(n_full) * bs);
        EXPECT_EQ(shared[5] + shared[6], 0);  // fork 1's second token and the other sequence
        const auto q = gaussian(n * n_heads * head_dim, 6);
        std::vector<float> fast(q.size()), want(q.size());
        kernels::attention_paged(p, pool, q.data(), fast.data(), n);
        kernels::ref::attention_paged(p, pool, q.data(), want.data(), n);
        EXPECT_LT(max_abs_diff(fast, want), 2e-5f);
        // A window turns the sharing off (keys before the window are not every member's).
        p.window = 100;
        kernels::detail::find_fork_groups(p, pool, n, members, groups, shared);
        EXPECT_TRUE(groups.empty());
        kernels::attention_paged(p, pool, q.data(), fast.data(), n);
        kernels::ref::attention_paged(p, pool, q.data(), want.data(), n);
        EXPECT_LT(max_abs_diff(fast, want), 2e-5f);
    }
}

TEST(PagedAttention, IdentityTableEqualsContiguousKernel) {
    const std::int64_t n_heads = 4, n_kv_heads = 4, head_dim = 64, kv_dim = n_kv_heads * head_dim, block_size = 16, n_blocks = 12;
    const auto k = gaussian(n_blocks * block_size * kv_dim, 4), v = gaussian(n_blocks * block_size * kv_dim, 5);
    std::vector<std::int32_t> table(static_cast<std::size_t>(n_blocks));
    std::iota(table.begin(), table.end(), 0);
    const std::int64_t n = 5, pos0 = 150;
    std::vector<std::span<const std::int32_t>> tables(n, std::span<const std::int32_t>(table));
    kernels::attention_params p;
    p.n_heads = n_heads;
    p.n_kv_heads = n_kv_heads;
    p.head_dim = head_dim;
    p.scale = 0.125f;
    p.pos0 = pos0;
    p.k = k.data();
    p.v = v.data();
    const auto q = gaussian(n * n_heads * head_dim, 6);
    std::vector<float> contiguous(q.size()), paged(q.size());
    kernels::attention(p, q.data(), contiguous.data(), n);
    p.k = p.v = nullptr;
    kernels::attention_paged(p, {k.data(), v.data(), block_size, n_blocks, tables.data()}, q.data(), paged.data(), n);
    EXPECT_LT(max_abs_diff(contiguous, paged), 1e-5f);
    // A table that does not reach the token's position is refused, naming the token.
    std::vector<std::span<const std::int32_t>> short_tables(n, std::span<const std::int32_t>(table).first(3));
    EXPECT_THROW(kernels::attention_paged(p, {k.data(), v.data(), block_size, n_blocks, short_tables.data()}, q.data(), paged.data(), n),
                 shape_error);
    std::vector<std::int32_t> bad = table;
    bad[2] = static_cast<std::int32_t>(n_blocks);
    std::vector<std::span<const std::int32_t>> bad_tables(n, std::span<const std::int32_t>(bad));
    EXPECT_THROW(kernels::attention_paged(p, {k.data(), v.data(), block_size, n_blocks, bad_tables.data()}, q.data(), paged.data(), n),
                 shape_error);
}

// ---- the cache ----

TEST(PagedKvCache, ForkSharesBlocksCopyOnWriteAndSeqRmFrees) {
    const std::int64_t kv_dim = 4, bs = 4;
    paged_kv_cache kv(2, kv_dim, dtype::f32, 20, bs, 4);
    using grow_list = std::vector<std::pair<std::int32_t, std::int64_t>>;
    auto write = [&](std::int32_t seq, std::int64_t from, std::int64_t to, float base) {
        for (std::int64_t p = from; p < to; ++p) {
            std::vector<float> row(kv_dim, base + static_cast<float>(p));
            for (std::int64_t l = 0; l < 2; ++l) kv.store_row(l, kv.row_of(seq, p), row.data(), row.data());
        }
    };
    auto read = [&](std::int32_t seq, std::int64_t p) { return static_cast<const float*>(kv.k(1))[kv.row_of(seq, p) * kv_dim]; };
    kv.grow(grow_list{{0, 10}});
    write(0, 0, 10, 100.0f);
    EXPECT_EQ(kv.usage().blocks_used, 3);
    kv.seq_cp(0, 1);
    kv.seq_cp(0, 2);
    EXPECT_EQ(kv.usage().blocks_used, 3);  // forks store nothing new
    EXPECT_EQ(kv.usage().blocks_shared, 3);
    EXPECT_EQ(kv.usage().bytes_shared, 3 * 2 * 2 * bs * kv_dim * 4);  // K and V of 2 layers, F32
    for (auto b : kv.table(0)) EXPECT_EQ(kv.refs(b), 3);
    // Sequence 1 appends: its partial last block is copied first; the parent's rows stay.
    kv.grow(grow_list{{1, 1}});
    write(1, 10, 11, 500.0f);
    EXPECT_EQ(kv.usage().blocks_used, 4);
    EXPECT_EQ(kv.usage().blocks_shared, 3);  // blocks 0 and 1 by three sequences, the old block 2 by sequences 0 and 2
    EXPECT_EQ(kv.table(1)[0], kv.table(0)[0]);
    EXPECT_NE(kv.table(1)[2], kv.table(0)[2]);
    EXPECT_EQ(read(1, 9), 109.0f);   // copied
    EXPECT_EQ(read(1, 10), 510.0f);  // written
    EXPECT_EQ(kv.n_pos(0), 10);
    // Sequence 0 appends into its block, still shared with sequence 2: copied again.
    kv.grow(grow_list{{0, 3}});
    EXPECT_EQ(kv.usage().blocks_used, 6);  // the copy, and a new block for position 12
    EXPECT_EQ(kv.refs(kv.table(2)[2]), 1);
    EXPECT_EQ(kv.usage().blocks_shared, 2);
    // seq_rm: a tail frees whole blocks; a hole or a head is refused; a whole sequence always goes.
    EXPECT_TRUE(kv.seq_rm(1, 5, -1));
    EXPECT_EQ(kv.n_pos(1), 5);
    EXPECT_EQ(kv.table(1).size(), 2u);
    EXPECT_EQ(kv.usage().blocks_used, 5);
    EXPECT_FALSE(kv.seq_rm(0, 2, 5));
    EXPECT_FALSE(kv.seq_rm(0, 0, 5));
    EXPECT_EQ(kv.n_pos(0), 13);
    EXPECT_TRUE(kv.seq_rm(0, -1, -1));
    EXPECT_EQ(kv.n_pos(0), 0);
    EXPECT_EQ(kv.usage().blocks_used, 3);  // sequence 2's three blocks (two shared with sequence 1)
    EXPECT_EQ(kv.usage().blocks_shared, 2);
    // A batch that does not fit changes nothing.
    EXPECT_THROW(kv.grow(grow_list{{0, 4 * 16}, {3, 8}}), error);
    EXPECT_EQ(kv.n_pos(0), 0);
    EXPECT_EQ(kv.n_pos(3), 0);
    EXPECT_EQ(kv.usage().blocks_used, 3);
    EXPECT_THROW(kv.n_pos(4), error);
    kv.clear();
    EXPECT_EQ(kv.usage().blocks_used, 0);
    EXPECT_EQ(kv.usage().blocks_shared, 0);
    EXPECT_EQ(kv.usage().bytes_total, 2 * 2 * 20 * bs * kv_dim * 4);
}

// ---- batch_context against one context per sequence ----

std::shared_ptr<const model> synth_model(const std::string& arch, std::uint64_t seed) {
    return synthesize_model(find_synth_preset(arch, "tiny"), dtype::f32, seed, arch + ".gguf");
}

std::vector<std::int32_t> prompt_ids(std::int64_t n, int salt, std::int64_t n_vocab) {
    std::vector<std::int32_t> ids;
    const std::int64_t range = std::min<std::int64_t>(n_vocab, 500);
    for (std::int64_t i = 0; i < n; ++i) ids.push_back(static_cast<std::int32_t>((i * 97 + salt * 31 + 3) % range));
    return ids;
}

// The logits of every position of `ids` decoded alone.
std::vector<std::vector<float>> alone(const std::shared_ptr<const model>& m, const std::vector<std::int32_t>& ids, dtype kv_type) {
    context ctx(m, {.n_ctx = std::min<std::int64_t>(128, m->config().n_ctx_train), .n_batch = 16, .kv_type = kv_type, .n_threads = 2});
    ctx.decode(ids, logits_for::all);
    std::vector<std::vector<float>> rows;
    for (std::int64_t r = 0; r < ctx.n_logits_rows(); ++r) rows.emplace_back(ctx.logits(r).begin(), ctx.logits(r).end());
    return rows;
}

// Three sequences, prompts prefilled in mixed batches (a whole prompt beside the first chunk of
// another, then that prompt's rest beside a third prompt split over several forward passes),
// then greedy decoding of all three in one batch per step. Every logits row of every sequence is
// compared with the sequence decoded alone, and the greedy tokens with context's greedy loop.
void check_mixed_batches(const std::shared_ptr<const model>& m, dtype kv_type, std::int64_t block_size, float tol) {
    const auto n_vocab = m->config().n_vocab;
    const std::vector<std::vector<std::int32_t>> prompts = {prompt_ids(23, 0, n_vocab), prompt_ids(9, 1, n_vocab), prompt_ids(40, 2, n_vocab)};
    batch_context bc(m, {.n_ctx = 256, .n_seq_max = 4, .n_batch = 16, .block_size = block_size, .kv_type = kv_type, .n_threads = 2});
    std::vector<std::vector<std::int32_t>> fed(3);
    std::vector<std::vector<std::vector<float>>> got(3);  // (sequence, position, n_vocab)
    batch b;
    auto add = [&](int s, std::size_t from, std::size_t to) {
        for (std::size_t i = from; i < to; ++i) {
            b.add(prompts[s][i], static_cast<std::int64_t>(fed[s].size()), s, true);
            fed[s].push_back(prompts[s][i]);
        }
    };
    auto collect = [&] {
        for (std::int64_t i = 0; i < b.size(); ++i) {
            const auto l = bc.logits_ith(i);
            got[static_cast<std::size_t>(b.seq_id[static_cast<std::size_t>(i)])].emplace_back(l.begin(), l.end());
        }
    };
    add(0, 0, prompts[0].size());
    add(1, 0, 4);
    bc.decode(b);
    collect();
    b.clear();
    add(1, 4, prompts[1].size());
    add(2, 0, prompts[2].size());
    bc.decode(b);
    collect();
    const int n_gen = 6;
    std::vector<std::vector<std::int32_t>> greedy(3);
    for (int step = 0; step < n_gen; ++step) {
        b.clear();
        for (int s = 0; s < 3; ++s) {
            const std::int32_t id = argmax(got[s].back());
            greedy[s].push_back(id);
            b.add(id, static_cast<std::int64_t>(fed[s].size()), s, true);
            fed[s].push_back(id);
        }
        bc.decode(b);
        collect();
    }
    float worst = 0;
    for (int s = 0; s < 3; ++s) {
        SCOPED_TRACE("sequence " + std::to_string(s));
        const auto want = alone(m, fed[s], kv_type);
        ASSERT_EQ(want.size(), got[s].size());
        for (std::size_t r = 0; r < want.size(); ++r) worst = std::max(worst, max_abs_diff(got[s][r], want[r]));
        // Greedy decoding of the prompt alone gives the same tokens.
        context ctx(m, {.n_ctx = std::min<std::int64_t>(128, m->config().n_ctx_train), .n_batch = 16, .kv_type = kv_type, .n_threads = 1});
        ctx.decode(prompts[s]);
        std::vector<std::int32_t> alone_greedy;
        for (int i = 0; i < n_gen; ++i) {
            const std::int32_t id = argmax(ctx.logits(0));
            alone_greedy.push_back(id);
            ctx.decode(std::span(&id, 1));
        }
        EXPECT_EQ(greedy[s], alone_greedy);
    }
    EXPECT_LT(worst, tol);
    const auto u = bc.memory();
    EXPECT_EQ(u.positions, static_cast<std::int64_t>(fed[0].size() + fed[1].size() + fed[2].size()));
    std::printf("[ measured ] %s %s cache, blocks of %lld: max |logit diff| vs one sequence alone %.3g; %lld of %lld blocks used\n",
                m->config().arch_name.c_str(), std::string(dtype_name(kv_type)).c_str(), static_cast<long long>(block_size), worst,
                static_cast<long long>(u.blocks_used), static_cast<long long>(u.blocks_total));
}

TEST(BatchContext, Stories260KMatchesOneSequenceAlone) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    check_mixed_batches(model::load(test::shared_path("models/stories260K.gguf")), dtype::f32, 16, 1e-4f);
}

TEST(BatchContext, Gpt2TinyMatchesOneSequenceAlone) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    // Exact GELU: llama.cpp's fp16 GELU table is a step function, so the float-rounding difference
    // between a batched and a one-sequence product (different summation orders) can pick a
    // neighbouring table entry and show up as ~5e-4 in the logits; that is the table, not batching.
    check_mixed_batches(model::load(test::shared_path("models/gpt2-tiny.gguf"), {.gelu = gelu_mode::exact}), dtype::f32, 4, 1e-4f);
    // With the table (the default) the greedy tokens are still identical and the logits close.
    check_mixed_batches(model::load(test::shared_path("models/gpt2-tiny.gguf")), dtype::f32, 4, 2e-3f);
}

TEST(BatchContext, Gemma2SlidingWindowMatchesOneSequenceAlone) {
    check_mixed_batches(synth_model("gemma2", 11), dtype::f32, 4, 1e-4f);  // window 8: most positions slide
}

TEST(BatchContext, LlamaF16CacheMatchesOneSequenceAlone) {
    check_mixed_batches(synth_model("llama", 12), dtype::f16, 16, 1e-4f);
}

TEST(BatchContext, Qwen3MatchesOneSequenceAlone) {
    check_mixed_batches(synth_model("qwen3", 13), dtype::f32, 8, 1e-4f);
}

// N forks of a long prompt store it once; each fork's first token copies only the partly filled
// last block; the parent's logits do not change when the forks write; seq_rm frees blocks and the
// truncated sequence continues as if it had never held the removed positions.
// Hidden-state taps (kNN-LM's ffn_input, embeddings' final_norm): the row of every token of a
// batch of two interleaved sequences, over several forward passes and with logits asked for only
// some tokens, equals the state context captures for that token decoding its sequence alone.
TEST(BatchContext, HiddenTapsMatchOneSequenceAlone) {
    for (const char* arch : {"llama", "gpt2"}) {
        const auto m = synth_model(arch, 11);
        const auto n_embd = m->config().n_embd;
        const std::vector<std::vector<std::int32_t>> prompts = {prompt_ids(21, 3, m->config().n_vocab), prompt_ids(14, 4, m->config().n_vocab)};
        for (const hidden_tap tap : {hidden_tap::ffn_input, hidden_tap::final_norm}) {
            SCOPED_TRACE(std::string(arch) + (tap == hidden_tap::ffn_input ? " ffn_input" : " final_norm"));
            batch_context bc(m, {.n_ctx = 128, .n_seq_max = 2, .n_batch = 16, .n_threads = 2, .tap = tap});
            batch b;
            std::vector<std::pair<int, std::size_t>> who;  // (batch index) sequence and position of each token
            for (std::size_t i = 0; i < 21; ++i)
                for (int s = 0; s < 2; ++s)
                    if (i < prompts[static_cast<std::size_t>(s)].size()) {
                        b.add(prompts[static_cast<std::size_t>(s)][i], static_cast<std::int64_t>(i), s, i % 5 == 0);
                        who.emplace_back(s, i);
                    }
            bc.decode(b);
            ASSERT_EQ(bc.tap_output().size(), static_cast<std::size_t>(b.size() * n_embd));
            std::vector<std::vector<float>> want(2);
            for (int s = 0; s < 2; ++s) {
                context ctx(m, {.n_ctx = 128, .n_batch = 16, .n_threads = 2, .tap = tap});
                ctx.decode(prompts[static_cast<std::size_t>(s)], logits_for::none);
                want[static_cast<std::size_t>(s)].assign(ctx.tap_output().begin(), ctx.tap_output().end());
            }
            float worst = 0;
            for (std::int64_t i = 0; i < b.size(); ++i) {
                const auto [s, pos] = who[static_cast<std::size_t>(i)];
                const auto row = bc.tap_ith(i);
                const float* w = want[static_cast<std::size_t>(s)].data() + pos * static_cast<std::size_t>(n_embd);
                for (std::int64_t e = 0; e < n_embd; ++e) worst = std::max(worst, std::abs(row[static_cast<std::size_t>(e)] - w[e]));
            }
            EXPECT_LT(worst, 1e-4f);
            EXPECT_GT(std::abs(bc.tap_ith(0)[0]) + std::abs(bc.tap_ith(0)[1]), 0.0f);
            EXPECT_THROW(bc.tap_ith(b.size()), error);
        }
    }
    batch_context none(synth_model("llama", 11), {.n_ctx = 64, .n_seq_max = 1});
    batch one;
    one.add(1, 0, 0, true);
    none.decode(one);
    EXPECT_TRUE(none.tap_output().empty());
}

TEST(BatchContext, ForksShareThePromptCopyOnWrite) {
    const auto m = synth_model("llama", 21);
    const auto n_vocab = m->config().n_vocab;
    const std::int64_t bs = 16;
    batch_context bc(m, {.n_ctx = 512, .n_seq_max = 8, .n_batch = 64, .block_size = bs, .n_threads = 2});
    const auto prompt = prompt_ids(50, 5, n_vocab);  // 3 full blocks and 2 positions
    batch b;
    for (std::size_t i = 0; i < prompt.size(); ++i) b.add(prompt[i], static_cast<std::int64_t>(i), 0, i + 1 == prompt.size());
    bc.decode(b);
    const auto used_prompt = bc.memory().blocks_used;
    EXPECT_EQ(used_prompt, 4);
    for (std::int32_t s = 1; s < 8; ++s) bc.seq_cp(0, s);
    EXPECT_EQ(bc.memory().blocks_used, used_prompt);  // 8 sequences of 50 positions in 4 blocks
    EXPECT_EQ(bc.memory().positions, 8 * 50);
    // Each sequence takes a different next token.
    b.clear();
    for (std::int32_t s = 0; s < 8; ++s) b.add(static_cast<std::int32_t>(100 + s), 50, s, true);
    bc.decode(b);
    EXPECT_EQ(bc.memory().blocks_used, used_prompt + 7);  // seven copies of the shared last block, one kept
    {
        // The attention of the next step groups the eight forks over the prompt's three full blocks.
        std::vector<std::span<const std::int32_t>> tables;
        for (std::int32_t s = 0; s < 8; ++s) tables.push_back(bc.kv().table(s));
        const std::vector<std::int64_t> next(8, 51);
        kernels::attention_params ap;
        ap.n_heads = m->config().n_head;
        ap.n_kv_heads = m->config().n_head_kv;
        ap.head_dim = m->config().head_dim;
        ap.positions = next.data();
        const kernels::paged_kv pool{nullptr, nullptr, bs, bc.kv().n_blocks(), tables.data()};
        std::vector<std::int64_t> members, shared;
        std::vector<kernels::detail::fork_group> groups;
        kernels::detail::find_fork_groups(ap, pool, 8, members, groups, shared);
        ASSERT_EQ(groups.size(), 1u);
        EXPECT_EQ(members.size(), 8u);
        EXPECT_EQ(groups[0].n_shared, 48);
    }
    for (std::int32_t s = 0; s < 8; ++s) {
        auto ids = prompt;
        ids.push_back(100 + s);
        EXPECT_LT(max_abs_diff(bc.logits_ith(s), alone(m, ids, dtype::f32).back()), 1e-4f) << "sequence " << s;
    }
    // The parent continues unaffected by its forks' writes.
    b.clear();
    b.add(7, 51, 0, true);
    bc.decode(b);
    {
        auto ids = prompt;
        ids.push_back(100);
        ids.push_back(7);
        EXPECT_LT(max_abs_diff(bc.logits_ith(0), alone(m, ids, dtype::f32).back()), 1e-4f);
    }
    // Truncate sequence 3 to 20 positions (frees its copied block; shared ones stay), then continue it.
    const auto before = bc.memory().blocks_used;
    EXPECT_TRUE(bc.seq_rm(3, 20, -1));
    EXPECT_EQ(bc.n_pos(3), 20);
    EXPECT_EQ(bc.memory().blocks_used, before - 1);
    EXPECT_FALSE(bc.seq_rm(3, 5, 10));
    b.clear();
    b.add(42, 20, 3, false);
    b.add(43, 21, 3, true);
    bc.decode(b);
    {
        std::vector<std::int32_t> ids(prompt.begin(), prompt.begin() + 20);
        ids.push_back(42);
        ids.push_back(43);
        EXPECT_LT(max_abs_diff(bc.logits_ith(1), alone(m, ids, dtype::f32).back()), 1e-4f);
    }
    EXPECT_THROW(bc.logits_ith(0), error);  // not asked for
    // Removing every sequence frees every block.
    for (std::int32_t s = 0; s < 8; ++s) EXPECT_TRUE(bc.seq_rm(s));
    EXPECT_EQ(bc.memory().blocks_used, 0);
}

TEST(BatchContext, BadBatchesThrowBeforeChangingAnything) {
    const auto m = synth_model("llama", 31);
    batch_context bc(m, {.n_ctx = 64, .n_seq_max = 2, .n_batch = 16, .block_size = 16, .n_threads = 1});
    batch b;
    b.add(1, 0, 0, true);
    b.add(2, 2, 0, true);  // skips position 1
    EXPECT_THROW(bc.decode(b), error);
    b.clear();
    b.add(1, 0, 2, true);  // sequence id out of range
    EXPECT_THROW(bc.decode(b), error);
    b.clear();
    b.add(100000, 0, 0, true);  // token id out of range
    EXPECT_THROW(bc.decode(b), error);
    b.clear();
    for (std::int64_t i = 0; i < 64 + 2 * 16 + 1; ++i) b.add(1, i, 0, false);  // more than the cache holds
    EXPECT_THROW(bc.decode(b), error);
    EXPECT_EQ(bc.n_pos(0), 0);
    EXPECT_EQ(bc.memory().blocks_used, 0);
    // -c positions fit however they are split over the sequences.
    b.clear();
    for (std::int64_t i = 0; i < 33; ++i) b.add(1, i, 0, false);
    for (std::int64_t i = 0; i < 31; ++i) b.add(2, i, 1, i == 30);
    bc.decode(b);
    EXPECT_EQ(bc.memory().positions, 64);
    EXPECT_EQ(bc.logits().size(), static_cast<std::size_t>(m->config().n_vocab));
}

}  // namespace
}  // namespace minigpt
