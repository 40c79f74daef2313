// LoRA adapters: llama.cpp's logits with its adapters applied (../shared/models/lora), a merged
// model computed here in double from the file's tensors (fused GPT-2 attn_qkv, output, two
// adapters at once), the low-rank term on quantised bases, per-context adapters, lora-merge, and
// bad adapters.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model.hpp"
#include "minigpt/model/lora.hpp"
#include "minigpt/model/lora_merge.hpp"
#include "test_data.hpp"

using namespace minigpt;
using minigpt::test::gaussian;
using minigpt::test::read_f32;
using minigpt::test::read_ids;
using minigpt::test::shared_path;

namespace {

// Scratch files of this process, removed when it ends (test::temp_name).
std::string temp_file(const std::string& name) { return minigpt::test::temp_name("lora-" + name); }

using minigpt::test::max_abs_diff;

std::vector<float> all_logits(const std::shared_ptr<const model>& m, const std::vector<std::int32_t>& ids,
                              const std::vector<lora_binding>& adapters = {}) {
    context ctx(m, {.n_ctx = static_cast<std::int64_t>(ids.size()) + 8});
    if (!adapters.empty()) ctx.set_adapters(adapters);
    ctx.decode(ids, logits_for::all);
    return {ctx.logits().begin(), ctx.logits().end()};
}

std::vector<std::int32_t> greedy(const std::shared_ptr<const model>& m, const std::vector<std::int32_t>& prompt, std::size_t n,
                                 const std::vector<lora_binding>& adapters) {
    context ctx(m, {.n_ctx = static_cast<std::int64_t>(prompt.size() + n) + 1});
    ctx.set_adapters(adapters);
    ctx.decode(prompt);
    std::vector<std::int32_t> out;
    for (std::size_t i = 0; i < n; ++i) {
        const auto l = ctx.logits(0);
        const auto id = static_cast<std::int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
        out.push_back(id);
        if (i + 1 < n) ctx.decode(std::span(&id, 1));
    }
    return out;
}

// The shared files: llama.cpp's logits at every prompt position with the adapter at `scale`.
void check_shared(const std::string& base, const std::string& adapter, const std::string& prompt_ids, const std::string& golden,
                  float scale) {
    auto m = model::load(shared_path(base));
    const auto ids = read_ids(shared_path(prompt_ids));
    const std::vector<lora_binding> b{{lora_adapter::load(shared_path("models/lora/" + adapter + ".gguf")), scale}};
    const auto ref = read_f32(shared_path("models/lora/" + golden + ".logits.f32"));
    const auto got = all_logits(m, ids, b);
    const float d = max_abs_diff(got, ref);
    EXPECT_LT(d, 1e-3f) << golden;
    // The adapter must matter: the base alone is far from the reference.
    EXPECT_GT(max_abs_diff(all_logits(m, ids), ref), 10 * std::max(d, 1e-4f)) << golden;
    std::printf("[ measured ] %s: max |logit - llama.cpp| = %.3g\n", golden.c_str(), d);
    const auto expected = read_ids(shared_path("models/lora/" + golden + ".greedy-ids.txt"));
    EXPECT_EQ(greedy(m, ids, expected.size(), b), expected) << golden;
}

}  // namespace

TEST(Lora, Stories260KScale1MatchesLlamaCpp) {
    MINIGPT_REQUIRE_SHARED("models/lora/stories260K-lora.gguf");
    check_shared("models/stories260K.gguf", "stories260K-lora", "models/lora/stories260K.prompt-ids.txt", "stories260K-lora-scale1", 1.0f);
}

TEST(Lora, Stories260KScaleHalfMatchesLlamaCpp) {
    MINIGPT_REQUIRE_SHARED("models/lora/stories260K-lora.gguf");
    check_shared("models/stories260K.gguf", "stories260K-lora", "models/lora/stories260K.prompt-ids.txt", "stories260K-lora-scale0.5", 0.5f);
}

TEST(Lora, Qwen2MatchesLlamaCpp) {
    MINIGPT_REQUIRE_SHARED("models/lora/qwen2-tiny-lora.gguf");
    check_shared("models/coverage/qwen2-tiny-f32.gguf", "qwen2-tiny-lora", "models/coverage/qwen2-tiny-f32.prompt-ids.txt",
                 "qwen2-tiny-lora-scale1", 1.0f);
}

namespace {

struct synth_lora {
    std::string name;    // base tensor
    std::int64_t r;
    std::uint32_t seed;
};

// Writes an adapter for `base` adapting `targets` (random A, B), and returns the path.
std::string write_adapter(const model& base, const std::string& file, const std::vector<synth_lora>& targets, float alpha,
                          const std::string& arch = "") {
    io::gguf_writer w(temp_file(file));
    w.set("general.architecture", arch.empty() ? base.config().arch_name : arch);
    w.set("general.type", "adapter");
    w.set("adapter.type", "lora");
    w.set("adapter.lora.alpha", alpha);
    for (const auto& t : targets) {
        const auto* info = base.gguf()->find_tensor(t.name);
        const bool matrix = info && info->shape.size() == 2;
        const std::int64_t n_out = matrix ? info->shape[0] : 8, n_in = matrix ? info->shape[1] : 8;
        const auto a = gaussian(t.r * n_in, t.seed, 0.1f);
        const auto b = gaussian(n_out * t.r, t.seed + 1, 0.1f);
        w.add_tensor(t.name + ".lora_a", tensor::view(dtype::f32, {t.r, n_in}, a.data()));
        w.add_tensor(t.name + ".lora_b", tensor::view(dtype::f32, {n_out, t.r}, b.data()));
    }
    w.finish();
    return temp_file(file);
}

std::string write_synth(const std::string& arch, const std::string& file, dtype type, bool untied = true) {
    synth_preset p = find_synth_preset(arch, "tiny");
    p.tied_output = !untied;
    io::gguf_writer w(temp_file(file));
    synthesize(w, p, type, 7);
    w.finish();
    return temp_file(file);
}

// The base with W + Σ scale·B·A in double for every adapted matrix, from the adapter files read
// here (alpha, rank and scale rule included), written by this test and not by merge_lora.
std::string write_reference_merge(const model& base, const std::vector<std::pair<std::string, float>>& adapters,
                                  const std::string& file) {
    const io::gguf_file& f = *base.gguf();
    auto as_double = [](const tensor& t) {
        std::vector<float> row(static_cast<std::size_t>(t.dim(1)));
        std::vector<double> m(static_cast<std::size_t>(t.dim(0) * t.dim(1)));
        for (std::int64_t i = 0; i < t.dim(0); ++i) {
            quant::dequantize_row(t.type(), t.row_ptr(i), row.data(), t.dim(1));
            std::copy(row.begin(), row.end(), m.begin() + i * t.dim(1));
        }
        return m;
    };
    std::map<std::string, std::vector<double>> merged;  // name -> (n_out, n_in)
    for (const auto& [path, user_scale] : adapters) {
        const auto ad = io::gguf_file::open(path);
        const double alpha = ad.get<float>("adapter.lora.alpha");
        for (const auto& info : ad.tensors()) {
            if (info.name.size() < 7 || info.name.substr(info.name.size() - 7) != ".lora_a") continue;
            const std::string name = info.name.substr(0, info.name.size() - 7);
            const tensor a = ad.get_tensor(name + ".lora_a"), b = ad.get_tensor(name + ".lora_b");
            const auto A = as_double(a), B = as_double(b);
            const std::int64_t r = a.dim(0), n_in = a.dim(1), n_out = b.dim(0);
            const double scale = alpha != 0 ? user_scale * alpha / static_cast<double>(r) : user_scale;
            if (!merged.count(name)) merged[name] = as_double(f.get_tensor(name));
            auto& W = merged[name];
            for (std::int64_t o = 0; o < n_out; ++o)
                for (std::int64_t i = 0; i < n_in; ++i) {
                    double s = 0;
                    for (std::int64_t k = 0; k < r; ++k) s += B[static_cast<std::size_t>(o * r + k)] * A[static_cast<std::size_t>(k * n_in + i)];
                    W[static_cast<std::size_t>(o * n_in + i)] += scale * s;
                }
        }
    }
    io::gguf_writer w(temp_file(file));
    w.copy_metadata_from(f);
    for (const auto& info : f.tensors()) {
        const tensor t = f.get_tensor(info.name);
        auto it = merged.find(info.name);
        if (it == merged.end()) { w.add_tensor(info.name, t); continue; }
        std::vector<float> m(it->second.begin(), it->second.end());
        w.add_tensor(info.name, tensor::view(dtype::f32, {t.dim(0), t.dim(1)}, m.data()));
    }
    w.finish();
    return temp_file(file);
}

const std::vector<std::int32_t> k_prompt = {1, 17, 300, 42, 5, 99, 250, 3, 77, 400, 12, 8};

}  // namespace

// GPT-2's fused attn_qkv, the output matrix and two adapters at once (scales 0.7 and -0.3), against
// the merge computed in double above; and merge_lora's file against the adapters applied at run time.
TEST(Lora, TwoAdaptersOnFusedGpt2EqualTheMergedModel) {
    const auto base_path = write_synth("gpt2", "gpt2.gguf", dtype::f32);
    auto base = model::load(base_path);
    const auto a1 = write_adapter(*base, "a1.gguf", {{"blk.0.attn_qkv.weight", 4, 11}, {"blk.1.ffn_down.weight", 2, 13}, {"output.weight", 3, 15}}, 8.0f);
    const auto a2 = write_adapter(*base, "a2.gguf", {{"blk.1.attn_qkv.weight", 8, 21}, {"blk.0.attn_output.weight", 4, 23}, {"blk.0.ffn_up.weight", 4, 25}}, 0.0f);
    const std::vector<lora_binding> b{{lora_adapter::load(a1), 0.7f}, {lora_adapter::load(a2), -0.3f}};
    const auto got = all_logits(base, k_prompt, b);
    auto ref_model = model::load(write_reference_merge(*base, {{a1, 0.7f}, {a2, -0.3f}}, "ref.gguf"));
    const auto ref = all_logits(ref_model, k_prompt);
    const float d = max_abs_diff(got, ref);
    EXPECT_LT(d, 1e-4f);
    EXPECT_GT(max_abs_diff(all_logits(base, k_prompt), ref), 1e-2f);  // the adapters change the logits
    std::printf("[ measured ] gpt2 two adapters vs double merge: %.3g\n", d);

    merge_lora(*base, b, temp_file("merged.gguf"));
    const auto merged = all_logits(model::load(temp_file("merged.gguf")), k_prompt);
    EXPECT_LT(max_abs_diff(merged, got), 1e-4f);
}

// On quantised bases the low-rank term is added to the base product: with and without the adapter
// differ by exactly scale · B (A x), computed here in double.
TEST(Lora, LowRankTermOnQuantisedBases) {
    for (dtype type : {dtype::f16, dtype::q8_0, dtype::q4_0}) {
        const auto path = write_synth("llama", std::string("llama_") + std::string(dtype_name(type)) + ".gguf", type);
        auto base = model::load(path);
        const auto ad_path = write_adapter(*base, "q.gguf", {{"blk.0.ffn_gate.weight", 4, 31}}, 16.0f);
        auto ad = lora_adapter::load(ad_path);
        const model_matrices mm(base->weights(), 1);
        projection_deltas deltas = make_projection_deltas(*base, {{ad, 0.5f}});
        deltas.reserve(3);
        const auto& c = base->config();
        const auto x = gaussian(3 * c.n_embd, 5);
        std::vector<float> y0(static_cast<std::size_t>(3 * c.n_ff)), y1(y0.size());
        project(mm, 0, {{matrix_role::ffn_gate, y0.data()}}, x.data(), 3, 1);
        project(mm, 0, {{matrix_role::ffn_gate, y1.data()}}, x.data(), 3, 1, &deltas);
        const auto& p = ad->pairs()[0];
        std::vector<float> A(static_cast<std::size_t>(4 * c.n_embd)), B(static_cast<std::size_t>(c.n_ff * 4));
        for (int k = 0; k < 4; ++k) quant::dequantize_row(dtype::f32, p.a.source().row_ptr(k), A.data() + k * c.n_embd, c.n_embd);
        for (std::int64_t o = 0; o < c.n_ff; ++o) quant::dequantize_row(dtype::f32, p.b.source().row_ptr(o), B.data() + o * 4, 4);
        double worst = 0;
        for (int t = 0; t < 3; ++t)
            for (std::int64_t o = 0; o < c.n_ff; ++o) {
                double ref = 0;
                for (int k = 0; k < 4; ++k) {
                    double ax = 0;
                    for (std::int64_t i = 0; i < c.n_embd; ++i) ax += double(A[static_cast<std::size_t>(k * c.n_embd + i)]) * x[static_cast<std::size_t>(t * c.n_embd + i)];
                    ref += double(B[static_cast<std::size_t>(o * 4 + k)]) * ax;
                }
                ref *= 0.5 * 16.0 / 4.0;
                const std::size_t j = static_cast<std::size_t>(t * c.n_ff + o);
                worst = std::max(worst, std::fabs((double(y1[j]) - y0[j]) - ref));
            }
        EXPECT_LT(worst, 1e-4) << dtype_name(type);
    }
}

// Contexts of one model run different adapters; the base stays as it was and switching back is exact.
TEST(Lora, AdaptersArePerContext) {
    auto base = model::load(write_synth("llama", "pc.gguf", dtype::f32));
    auto ad = lora_adapter::load(write_adapter(*base, "pc_a.gguf", {{"blk.1.attn_v.weight", 4, 41}}, 4.0f));
    const auto plain = all_logits(base, k_prompt);
    context with(base, {.n_ctx = 64});
    with.set_adapters({{ad, 1.0f}});
    with.decode(k_prompt, logits_for::all);
    EXPECT_GT(max_abs_diff(with.logits(), plain), 1e-3f);
    EXPECT_EQ(all_logits(base, k_prompt), plain);  // another context of the same model: unchanged, bit for bit
    auto forked = with.fork();
    EXPECT_EQ(forked->adapters().size(), 1u);
    with.set_adapters({});
    with.truncate(0);
    with.decode(k_prompt, logits_for::all);
    EXPECT_EQ(std::vector<float>(with.logits().begin(), with.logits().end()), plain);
}

TEST(Lora, BadAdaptersAreClearErrors) {
    auto base = model::load(write_synth("llama", "bad.gguf", dtype::f32));
    auto expect_error = [&](const std::string& path, const std::string& needle) {
        try {
            context ctx(base, {.n_ctx = 16});
            ctx.set_adapters({{lora_adapter::load(path), 1.0f}});
            FAIL() << "no error for " << needle;
        } catch (const error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    expect_error(write_adapter(*base, "arch.gguf", {{"blk.0.attn_q.weight", 2, 1}}, 1.0f, "gpt2"), "architecture 'gpt2'");
    expect_error(write_adapter(*base, "missing.gguf", {{"blk.9.attn_q.weight", 2, 1}}, 1.0f), "blk.9.attn_q.weight");
    expect_error(write_adapter(*base, "role.gguf", {{"blk.0.attn_norm.weight", 2, 1}}, 1.0f), "cannot adapt 'blk.0.attn_norm.weight'");
    expect_error(temp_file("bad.gguf"), "general.type");  // a model, not an adapter
    {   // wrong shape: lora_a of the wrong input width
        io::gguf_writer w(temp_file("shape.gguf"));
        w.set("general.architecture", "llama");
        w.set("general.type", "adapter");
        w.set("adapter.type", "lora");
        w.set("adapter.lora.alpha", 1.0f);
        const auto a = gaussian(2 * 10, 1), b = gaussian(64 * 2, 2);
        w.add_tensor("blk.0.attn_q.weight.lora_a", tensor::view(dtype::f32, {2, 10}, a.data()));
        w.add_tensor("blk.0.attn_q.weight.lora_b", tensor::view(dtype::f32, {64, 2}, b.data()));
        w.finish();
        expect_error(temp_file("shape.gguf"), "blk.0.attn_q.weight");
    }
    {   // a lone lora_a
        io::gguf_writer w(temp_file("lone.gguf"));
        w.set("general.architecture", "llama");
        w.set("general.type", "adapter");
        w.set("adapter.type", "lora");
        const auto a = gaussian(2 * 64, 1);
        w.add_tensor("blk.0.attn_q.weight.lora_a", tensor::view(dtype::f32, {2, 64}, a.data()));
        w.finish();
        expect_error(temp_file("lone.gguf"), "no matching 'blk.0.attn_q.weight.lora_b'");
    }
}
