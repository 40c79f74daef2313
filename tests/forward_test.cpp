// Forward-pass tests against the reference implementations: llama2.c's run.c
// (stories260K, as .bin and as GGUF) and llama.cpp (gpt2-tiny), plus batch-vs-
// sequential consistency, context forking, taps and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model.hpp"
#include "minigpt/model/synth.hpp"
#include "test_data.hpp"

using namespace minigpt;
using minigpt::test::read_f32;
using minigpt::test::read_ids;
using minigpt::test::shared_path;

namespace {

using minigpt::test::max_abs_diff;

std::int32_t argmax_of(std::span<const float> x) {
    return static_cast<std::int32_t>(std::max_element(x.begin(), x.end()) - x.begin());
}

// Teacher-forced logits at every position of `ids` must match `golden` (n_positions, n_vocab).
void expect_teacher_forced(const std::string& model_path, const std::vector<std::int32_t>& ids,
                           const std::vector<float>& golden, std::int64_t n_positions, float tol) {
    auto m = model::load(model_path);
    const auto n_vocab = m->config().n_vocab;
    ASSERT_EQ(static_cast<std::int64_t>(golden.size()), n_positions * n_vocab);
    context ctx(m, {.n_ctx = n_positions});
    ctx.decode(std::span(ids).first(static_cast<std::size_t>(n_positions)), logits_for::all);
    float worst = 0;
    for (std::int64_t p = 0; p < n_positions; ++p) {
        auto ref = std::span(golden).subspan(static_cast<std::size_t>(p * n_vocab), static_cast<std::size_t>(n_vocab));
        worst = std::max(worst, max_abs_diff(ctx.logits(p), ref));
    }
    EXPECT_LT(worst, tol) << model_path;
    std::printf("[ measured ] %s: max |logit - reference| over %lld positions = %.3g\n", model_path.c_str(),
                static_cast<long long>(n_positions), worst);
}

// Greedy generation one token at a time from `prompt` must reproduce `expected`.
void expect_greedy(const std::string& model_path, const std::vector<std::int32_t>& prompt,
                   const std::vector<std::int32_t>& expected) {
    auto m = model::load(model_path);
    context ctx(m, {.n_ctx = static_cast<std::int64_t>(prompt.size() + expected.size())});
    ctx.decode(prompt);
    std::vector<std::int32_t> got;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const std::int32_t next = argmax_of(ctx.logits(0));
        got.push_back(next);
        if (i + 1 < expected.size()) ctx.decode(std::span(&next, 1));
    }
    EXPECT_EQ(got, expected) << model_path;
}

}  // namespace

TEST(Forward, Stories260KBinMatchesLlama2c) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    const auto ids = read_ids(shared_path("golden/stories260K/greedy-ids.txt"));
    ASSERT_EQ(ids.size(), 257u);
    expect_teacher_forced(shared_path("models/stories260K.bin"), ids,
                          read_f32(shared_path("golden/stories260K/logits.f32")), 256, 1e-3f);
}

TEST(Forward, Stories260KGgufMatchesLlama2c) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto ids = read_ids(shared_path("golden/stories260K/greedy-ids.txt"));
    expect_teacher_forced(shared_path("models/stories260K.gguf"), ids,
                          read_f32(shared_path("golden/stories260K/logits.f32")), 256, 1e-3f);
}

TEST(Forward, Stories260KGreedyIds) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    const auto ids = read_ids(shared_path("golden/stories260K/greedy-ids.txt"));
    const std::vector<std::int32_t> prompt(ids.begin(), ids.begin() + 1);
    const std::vector<std::int32_t> expected(ids.begin() + 1, ids.end());
    expect_greedy(shared_path("models/stories260K.bin"), prompt, expected);
    expect_greedy(shared_path("models/stories260K.gguf"), prompt, expected);
}

TEST(Forward, Gpt2TinyMatchesLlamaCpp) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    const auto ids = read_ids(shared_path("golden/gpt2-tiny/prompt-ids.txt"));
    expect_teacher_forced(shared_path("models/gpt2-tiny.gguf"), ids,
                          read_f32(shared_path("golden/gpt2-tiny/prompt-logits.f32")),
                          static_cast<std::int64_t>(ids.size()), 1e-3f);
    expect_greedy(shared_path("models/gpt2-tiny.gguf"), ids,
                  read_ids(shared_path("golden/gpt2-tiny/greedy-continuation-ids.txt")));
}

TEST(Forward, BatchedPrefillEqualsTokenByToken) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    // GPT-2 runs with exact GELU here: llama.cpp's fp16-table GELU (the default) is a step function that
    // turns last-bit differences between GEMM and GEMV summation orders into fp16 ulps (4.4e-4 measured).
    for (const char* name : {"models/stories260K.gguf", "models/gpt2-tiny.gguf"}) {
        auto m = model::load(shared_path(name), {.gelu = gelu_mode::exact});
        std::vector<std::int32_t> ids;
        for (int i = 0; i < 100; ++i) ids.push_back((i * 37 + 11) % 500);
        context batch(m, {.n_ctx = 128, .n_batch = 32});  // several chunks
        batch.decode(ids, logits_for::all);
        context seq(m, {.n_ctx = 128});
        float worst = 0;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            seq.decode(std::span(&ids[i], 1));
            worst = std::max(worst, max_abs_diff(seq.logits(0), batch.logits(static_cast<std::int64_t>(i))));
        }
        EXPECT_LT(worst, 1e-4f) << name;
        std::printf("[ measured ] %s: batched vs sequential max diff %.3g\n", name, worst);
    }
}

TEST(Forward, ForkSharesPrefixAndTapsMatchPositions) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    auto m = model::load(shared_path("models/stories260K.gguf"));
    const auto ids = read_ids(shared_path("golden/stories260K/greedy-ids.txt"));
    context a(m, {.n_ctx = 300, .tap = hidden_tap::ffn_input});
    a.decode(std::span(ids).first(50));
    EXPECT_EQ(a.tap_output().size(), 50u * 64u);
    auto b = a.fork();
    a.decode(std::span(ids).subspan(50, 1));
    b->decode(std::span(ids).subspan(50, 1));
    EXPECT_EQ(max_abs_diff(a.logits(0), b->logits(0)), 0.0f);
    // The final-norm tap of the full sequence equals what the output matrix sees: logits = output · tap.
    context full(m, {.n_ctx = 300, .tap = hidden_tap::final_norm});
    full.decode(std::span(ids).first(51), logits_for::all);
    const auto& out = m->weights().output;
    std::vector<float> row(64);
    quant::dequantize_row(out.type(), out.row_ptr(7), row.data(), 64);
    double dot = 0;
    for (int i = 0; i < 64; ++i) dot += double(row[static_cast<std::size_t>(i)]) * full.tap_output()[static_cast<std::size_t>(50 * 64 + i)];
    EXPECT_NEAR(dot, full.logits(50)[7], 1e-4);
    EXPECT_LT(max_abs_diff(full.logits(50), a.logits(0)), 1e-4f);
}

TEST(Forward, LayerCallbackSeesEveryLayer) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    auto m = model::load(shared_path("models/stories260K.gguf"));
    context ctx(m, {.n_ctx = 64});
    std::vector<std::int64_t> seen;
    ctx.set_layer_callback([&](std::int64_t layer, std::span<const float> x, std::int64_t n_tokens) {
        seen.push_back(layer);
        EXPECT_EQ(static_cast<std::int64_t>(x.size()), n_tokens * 64);
    });
    const std::int32_t ids[] = {1, 300, 301};
    ctx.decode(ids);
    EXPECT_EQ(seen, (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
}

TEST(Forward, BadInputThrows) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    auto m = model::load(shared_path("models/stories260K.gguf"));
    context ctx(m, {.n_ctx = 8});
    const std::int32_t bad[] = {1, 512};
    EXPECT_THROW(ctx.decode(bad), error);
    const std::int32_t neg[] = {-1};
    EXPECT_THROW(ctx.decode(neg), error);
    std::vector<std::int32_t> many(9, 1);
    EXPECT_THROW(ctx.decode(many), error);
    EXPECT_THROW(ctx.decode({}), error);
    EXPECT_THROW(model::load("/nonexistent/model.gguf"), error);
    EXPECT_THROW(model::load(shared_path("vocab/ggml-vocab-gpt-2.gguf")), error);  // vocab only: no tensors
    EXPECT_THROW(ctx.truncate(3), error);
    EXPECT_THROW(context(m, {.n_ctx = 8, .kv_type = dtype::q8_0}), error);
}

TEST(Forward, F16KvCacheIsClose) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    auto m = model::load(shared_path("models/stories260K.gguf"));
    const auto ids = read_ids(shared_path("golden/stories260K/greedy-ids.txt"));
    const auto golden = read_f32(shared_path("golden/stories260K/logits.f32"));
    context ctx(m, {.n_ctx = 256, .kv_type = dtype::f16});
    ctx.decode(std::span(ids).first(256), logits_for::all);
    const float worst = max_abs_diff(ctx.logits(), golden);
    // F16 keeps 11 significant bits of K and V (relative error <= 2^-12 each); through 5 layers that
    // moved logits of magnitude ~15 by 0.059 at worst when measured.
    EXPECT_LT(worst, 0.1f);
    std::printf("[ measured ] F16 KV cache: max |logit - reference| = %.3g\n", worst);
}

namespace {

// Writes a synthesised model of `type` (same seed: the same underlying random values) into memory.
std::shared_ptr<const model> synth_model(architecture arch, dtype type) {
    io::gguf_writer w;
    synthesize(w, find_synth_preset(arch, "tiny"), type, 7);
    auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
    return model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, "synth")),
                            {.gelu = gelu_mode::exact});
}

}  // namespace

TEST(Forward, QuantisedCopiesAreCloseToF32) {
    // Tolerances are what was measured on the tiny presets (64 wide, logits of magnitude ~0.1-0.5)
    // with ~2x margin; the relative error follows each format's step: f16 2^-11, q8_0 ~1/254, q4_0 ~1/14.
    struct tol { dtype type; float max_abs; };
    for (auto arch : {architecture::llama, architecture::gpt2}) {
        auto ref = synth_model(arch, dtype::f32);
        std::vector<std::int32_t> ids;
        for (int i = 0; i < 40; ++i) ids.push_back((i * 131 + 7) % 500);
        context ref_ctx(ref, {.n_ctx = 64});
        ref_ctx.decode(ids, logits_for::all);
        float scale = 0;
        for (float v : ref_ctx.logits()) scale = std::max(scale, std::fabs(v));
        for (tol t : {tol{dtype::f16, 2e-3f}, tol{dtype::bf16, 2e-2f}, tol{dtype::q8_0, 2e-2f}, tol{dtype::q4_0, 0.2f}}) {
            auto m = synth_model(arch, t.type);
            EXPECT_EQ(m->weights().layers[0].ffn_up.type(), t.type);
            context ctx(m, {.n_ctx = 64});
            ctx.decode(ids, logits_for::all);
            const float diff = max_abs_diff(ctx.logits(), ref_ctx.logits());
            EXPECT_LT(diff, t.max_abs * scale) << dtype_name(t.type);
            EXPECT_GT(diff, 0.0f) << dtype_name(t.type);  // it really is another encoding
            std::printf("[ measured ] %s %s vs f32: max |diff| %.3g (max |logit| %.3g)\n",
                        arch == architecture::gpt2 ? "gpt2" : "llama", std::string(dtype_name(t.type)).c_str(), diff, scale);
        }
    }
}

// context_params::repack = false uses Q4_0 / Q8_0 weights in place instead of the 16-row packed copy.
// Token by token both run integer kernels on 8-bit activations (per-row kernels against the packed
// ones) whose float sums are taken in different orders, so their outputs differ in the last bits
// (~6e-8). That noise reaches the next layer's activations, and where one of them sits within an ulp
// of a rounding boundary of its 8-bit quantisation (x * 127/amax near k + 0.5), the two paths round
// it to neighbouring integers: a whole quantisation step in one activation, ~1% of that layer's
// output. Which tokens meet such a tie depends on the exact float order, hence on the optimisation
// level: with -O1 it happens for GPT-2 Q4_0 at token 1, layer 1 (attn_output's input, issue 15),
// with -O3 not on these inputs. So: every token within the activation-rounding budget of the prefill
// below, and nearly all (a real kernel difference would show on every token) within 1e-4.
// A prefill differs more: in place, a batch goes through the float GEMM on f32 activations, so the
// gap is the activations' 8-bit rounding (the budget of QuantisedCopiesAreCloseToF32 for q8_0).
TEST(Forward, InPlaceAndRepackedQuantisedWeightsAgree) {
    std::vector<std::int32_t> ids;
    for (int i = 0; i < 40; ++i) ids.push_back((i * 37 + 11) % 500);
    for (auto arch : {architecture::llama, architecture::gpt2})
        for (dtype t : {dtype::q8_0, dtype::q4_0}) {
            SCOPED_TRACE(std::string(arch == architecture::gpt2 ? "gpt2 " : "llama ") + std::string(dtype_name(t)));
            auto m = synth_model(arch, t);
            context packed(m, {.n_ctx = 64}), in_place(m, {.n_ctx = 64, .repack = false});
            float scale = 0;
            int n_rounding_flips = 0;
            for (int k = 0; k < 12; ++k) {
                packed.decode(std::span(&ids[static_cast<std::size_t>(k)], 1));
                in_place.decode(std::span(&ids[static_cast<std::size_t>(k)], 1));
                for (float v : packed.logits()) scale = std::max(scale, std::fabs(v));
                const float diff = max_abs_diff(packed.logits(), in_place.logits());
                EXPECT_LT(diff, 2e-2f * scale) << "token " << k;
                if (diff >= 1e-4f * scale) ++n_rounding_flips;
            }
            EXPECT_LE(n_rounding_flips, 2) << "tokens whose outputs differ by more than float summation order";
            context packed_batch(m, {.n_ctx = 64}), in_place_batch(m, {.n_ctx = 64, .repack = false});
            packed_batch.decode(ids, logits_for::all);
            in_place_batch.decode(ids, logits_for::all);
            const float diff = max_abs_diff(packed_batch.logits(), in_place_batch.logits());
            EXPECT_LT(diff, 2e-2f * scale);
            std::printf("[ measured ] in place vs repacked, 40-token prefill: max |diff| %.3g (max |logit| %.3g)\n", diff, scale);
        }
}

TEST(Forward, BadModelFilesNameWhatIsWrong) {
    auto expect_error = [](io::gguf_writer& w, const std::string& needle) {
        auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
        try {
            model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, "bad.gguf")));
            ADD_FAILURE() << "no error, expected one mentioning " << needle;
        } catch (const error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    {  // unknown architecture
        io::gguf_writer w;
        w.set("general.architecture", std::string("mamba"));
        expect_error(w, "mamba");
    }
    {  // missing key
        io::gguf_writer w;
        synthesize(w, find_synth_preset(architecture::llama, "tiny"), dtype::f32);
        w.remove("llama.block_count");
        expect_error(w, "llama.block_count");
    }
    {  // absurd dimension
        io::gguf_writer w;
        synthesize(w, find_synth_preset(architecture::llama, "tiny"), dtype::f32);
        w.set("llama.block_count", std::uint32_t{1000000});
        expect_error(w, "n_layer");
    }
    {  // head count that does not divide
        io::gguf_writer w;
        synthesize(w, find_synth_preset(architecture::llama, "tiny"), dtype::f32);
        w.set("llama.attention.head_count_kv", std::uint32_t{3});
        expect_error(w, "n_head_kv");
    }
    {  // tensor with the wrong shape: config says 3 layers, blk.2 is missing
        io::gguf_writer w;
        synthesize(w, find_synth_preset(architecture::llama, "tiny"), dtype::f32);
        w.set("llama.block_count", std::uint32_t{3});
        expect_error(w, "blk.2.attn_norm.weight");
    }
    {  // wrong shape
        io::gguf_writer w;
        synthesize(w, find_synth_preset(architecture::llama, "tiny"), dtype::f32);
        w.set("llama.feed_forward_length", std::uint32_t{100});
        expect_error(w, "blk.0.ffn_gate.weight");
    }
}

TEST(Forward, TruncatedModelFileAtEveryOffsetThrows) {
    io::gguf_writer w;
    synth_preset tiny = find_synth_preset(architecture::llama, "tiny");
    tiny.n_vocab = 300;
    tiny.n_embd = 32;
    tiny.n_ff = 64;
    tiny.n_layer = 1;
    synthesize(w, tiny, dtype::q8_0);
    const auto full = w.finish_to_memory();
    // Every prefix of the file must be rejected with minigpt::error (never a crash or a model).
    for (std::size_t n = 0; n < full.size(); n += (n < 4096 ? 1 : 97)) {
        auto bytes = std::make_shared<const std::vector<std::byte>>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
        EXPECT_THROW(model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, "cut.gguf"))), error) << n;
    }
    auto bytes = std::make_shared<const std::vector<std::byte>>(full);
    EXPECT_NO_THROW(model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, "whole.gguf"))));
}
