// Every architecture of the registry against an independent reference:
//  - the ../shared/models/coverage files (qwen2, phi3, gemma2, llama with rope_freqs) against
//    llama.cpp's logits at 48 positions (within 2e-3) and its 16 greedy ids;
//  - synthesised files of every architecture (starcoder2, gemma, gemma2 with a short window,
//    phi3 with LongRoPE factors, llama with rope_freqs and biases, ...) against a scalar double
//    forward pass written here from the published definitions, reading the weights straight
//    from the GGUF file (none of the library's layer code);
//  - strict loading: leftover, missing and misshapen tensors and unsupported keys are errors
//    naming them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/io/gguf.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model.hpp"
#include "minigpt/model/synth.hpp"
#include "double_tensors.hpp"
#include "test_data.hpp"

using namespace minigpt;

namespace {

using minigpt::test::max_abs_diff;

std::int32_t argmax(std::span<const float> x) {
    return static_cast<std::int32_t>(std::max_element(x.begin(), x.end()) - x.begin());
}

// ---- llama.cpp's outputs on the coverage files ----

void check_coverage(const std::string& name) {
    const std::string base = "models/coverage/" + name;
    MINIGPT_REQUIRE_SHARED(base + ".gguf");
    auto m = model::load(test::shared_path(base + ".gguf"));
    const auto ids = test::read_ids(test::shared_path(base + ".prompt-ids.txt"));
    const auto want = test::read_f32(test::shared_path(base + ".logits.f32"));
    const auto greedy = test::read_ids(test::shared_path(base + ".greedy-ids.txt"));
    ASSERT_EQ(ids.size(), 48u);
    ASSERT_EQ(want.size(), ids.size() * static_cast<std::size_t>(m->config().n_vocab));
    context ctx(m, {.n_ctx = std::max<std::int64_t>(m->config().n_ctx_train, 64)});
    ctx.decode(ids, logits_for::all);
    const float diff = max_abs_diff(ctx.logits(), want);
    EXPECT_LT(diff, 2e-3f) << name;
    std::vector<std::int32_t> got;
    std::int32_t next = argmax(ctx.logits(static_cast<std::int64_t>(ids.size()) - 1));
    for (std::size_t i = 0; i < greedy.size(); ++i) {
        got.push_back(next);
        ctx.decode(std::span(&next, 1));
        next = argmax(ctx.logits());
    }
    EXPECT_EQ(got, greedy) << name;
    std::printf("[ measured ] %s: max |logit - llama.cpp| over 48 positions = %.3g, greedy ids %s\n", name.c_str(), diff,
                got == greedy ? "identical" : "DIFFER");
}

TEST(Architectures, Qwen2MatchesLlamaCpp) { check_coverage("qwen2-tiny-f32"); }
TEST(Architectures, Phi3MatchesLlamaCpp) { check_coverage("phi3-tiny-f32"); }
TEST(Architectures, Gemma2MatchesLlamaCpp) { check_coverage("gemma2-tiny-f32"); }
TEST(Architectures, LlamaRopeFreqsMatchesLlamaCpp) { check_coverage("llama31-ropefreqs-f32"); }

// ---- an independent scalar forward pass, in double, from the published definitions ----

using vec = std::vector<double>;

struct recipe {
    bool layer_norm = false;      // LayerNorm with bias (GPT-2, StarCoder2) instead of RMSNorm
    bool fused_qkv = false;       // one attn_qkv matrix (Phi-3, GPT-2)
    bool neox = false;            // rotate (x[i], x[i + n_rot/2]) instead of (x[2i], x[2i+1])
    bool rope = true;
    bool post_norms = false;      // Gemma 2's post-attention / post-FFN RMSNorms
    bool learned_pos = false;
    double embd_scale = 1.0;
    enum { swiglu, geglu, gelu_mlp, fused_swiglu } ffn = swiglu;
    double attn_scale = 0.0;      // 0: 1/sqrt(head_dim)
    double attn_cap = 0.0, final_cap = 0.0;
    std::int64_t window = 0;      // on layers with il % period < period - 1 (period 0: all)
    int period = 0;
    std::string rope_factors;     // tensor name of the frequency divisors, if any
    double mscale = 1.0;
    bool qk_norm = false;         // per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3)
    float rope_base = 0.0f;       // written to the file as rope.freq_base when set
    double rope_base_local = 0.0; // base of the sliding-window layers (Gemma 3: 10000)
};

struct ref_model : minigpt::test::double_tensors {
    model_config c;  // sizes and keys as the file states them
    recipe r;

    static void add_to(vec& y, const vec& b) { for (std::size_t i = 0; i < y.size(); ++i) y[i] += b[i]; }
    vec norm(const vec& x, const std::string& w, const std::string& b) const {
        const vec g = vector(w);
        const double eps = c.norm_eps;
        vec y(x.size());
        const double n = static_cast<double>(x.size());
        if (r.layer_norm) {
            double mean = 0, var = 0;
            for (double v : x) mean += v / n;
            for (double v : x) var += (v - mean) * (v - mean) / n;
            const vec bb = vector(b);
            for (std::size_t i = 0; i < x.size(); ++i) y[i] = (x[i] - mean) / std::sqrt(var + eps) * g[i] + bb[i];
        } else {
            double ss = 0;
            for (double v : x) ss += v * v / n;
            for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(ss + eps) * g[i];
        }
        return y;
    }
    static double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
    static double silu(double x) { return x / (1.0 + std::exp(-x)); }
    void head_norm(vec& x, std::int64_t n_heads, const std::string& w) const {
        const vec g = vector(w);
        const std::int64_t hd = c.head_dim;
        for (std::int64_t h = 0; h < n_heads; ++h) {
            double ss = 0;
            for (std::int64_t i = 0; i < hd; ++i) ss += x[static_cast<std::size_t>(h * hd + i)] * x[static_cast<std::size_t>(h * hd + i)] / static_cast<double>(hd);
            for (std::int64_t i = 0; i < hd; ++i)
                x[static_cast<std::size_t>(h * hd + i)] = x[static_cast<std::size_t>(h * hd + i)] / std::sqrt(ss + c.norm_eps) * g[static_cast<std::size_t>(i)];
        }
    }
    void rope(vec& x, std::int64_t n_heads, std::int64_t pos, double base) const {
        const std::int64_t hd = c.head_dim, n_rot = c.n_rot, half = n_rot / 2;
        const vec ff = r.rope_factors.empty() ? vec(static_cast<std::size_t>(half), 1.0) : vector(r.rope_factors);
        for (std::int64_t h = 0; h < n_heads; ++h)
            for (std::int64_t i = 0; i < half; ++i) {
                const double th = static_cast<double>(pos) * std::pow(base, -2.0 * i / n_rot) /
                                  ff[static_cast<std::size_t>(i)];
                const std::size_t a = static_cast<std::size_t>(h * hd + (r.neox ? i : 2 * i));
                const std::size_t b = static_cast<std::size_t>(h * hd + (r.neox ? i + half : 2 * i + 1));
                const double x0 = x[a], x1 = x[b];
                x[a] = (x0 * std::cos(th) - x1 * std::sin(th)) * r.mscale;
                x[b] = (x0 * std::sin(th) + x1 * std::cos(th)) * r.mscale;
            }
    }

    // Logits (n_tokens, n_vocab) for ids at positions 0..
    std::vector<float> forward(const std::vector<std::int32_t>& ids) const {
        const std::int64_t n = static_cast<std::int64_t>(ids.size()), hd = c.head_dim;
        const std::int64_t nh = c.n_head, nkv = c.n_head_kv, qd = nh * hd, kvd = nkv * hd;
        const auto embd = matrix("token_embd.weight");
        std::vector<vec> x;
        for (std::int64_t t = 0; t < n; ++t) {
            vec e = embd[static_cast<std::size_t>(ids[static_cast<std::size_t>(t)])];
            for (auto& v : e) v *= r.embd_scale;
            if (r.learned_pos) add_to(e, matrix("position_embd.weight")[static_cast<std::size_t>(t)]);
            x.push_back(e);
        }
        auto opt_bias = [&](vec& y, const std::string& n) { if (has(n)) add_to(y, vector(n)); };
        for (std::int64_t l = 0; l < c.n_layer; ++l) {
            const std::string p = "blk." + std::to_string(l) + ".";
            std::vector<vec> Q, K, V;
            const std::int64_t win = r.window > 0 && (r.period == 0 || l % r.period < r.period - 1) ? r.window : 0;
            for (std::int64_t t = 0; t < n; ++t) {
                const vec h = norm(x[static_cast<std::size_t>(t)], p + "attn_norm.weight", p + "attn_norm.bias");
                vec q, k, v;
                if (r.fused_qkv) {
                    vec qkv = mv(matrix(p + "attn_qkv.weight"), h);
                    opt_bias(qkv, p + "attn_qkv.bias");
                    q.assign(qkv.begin(), qkv.begin() + qd);
                    k.assign(qkv.begin() + qd, qkv.begin() + qd + kvd);
                    v.assign(qkv.begin() + qd + kvd, qkv.end());
                } else {
                    q = mv(matrix(p + "attn_q.weight"), h), k = mv(matrix(p + "attn_k.weight"), h), v = mv(matrix(p + "attn_v.weight"), h);
                    opt_bias(q, p + "attn_q.bias"), opt_bias(k, p + "attn_k.bias"), opt_bias(v, p + "attn_v.bias");
                }
                if (r.qk_norm) head_norm(q, nh, p + "attn_q_norm.weight"), head_norm(k, nkv, p + "attn_k_norm.weight");
                const double base = r.rope_base_local > 0 && win > 0 ? r.rope_base_local : static_cast<double>(c.rope_freq_base);
                if (r.rope) rope(q, nh, t, base), rope(k, nkv, t, base);
                Q.push_back(q), K.push_back(k), V.push_back(v);
            }
            const double scale = r.attn_scale > 0 ? r.attn_scale : 1.0 / std::sqrt(static_cast<double>(hd));
            const auto wo = matrix(p + "attn_output.weight");
            for (std::int64_t t = 0; t < n; ++t) {
                vec att(static_cast<std::size_t>(qd), 0.0);
                const std::int64_t lo = win > 0 ? std::max<std::int64_t>(0, t - win + 1) : 0;
                for (std::int64_t h = 0; h < nh; ++h) {
                    const std::int64_t g = h / (nh / nkv);
                    vec s;
                    for (std::int64_t j = lo; j <= t; ++j) {
                        double d = 0;
                        for (std::int64_t i = 0; i < hd; ++i)
                            d += Q[static_cast<std::size_t>(t)][static_cast<std::size_t>(h * hd + i)] * K[static_cast<std::size_t>(j)][static_cast<std::size_t>(g * hd + i)];
                        d *= scale;
                        if (r.attn_cap > 0) d = r.attn_cap * std::tanh(d / r.attn_cap);
                        s.push_back(d);
                    }
                    const double mx = *std::max_element(s.begin(), s.end());
                    double sum = 0;
                    for (auto& v : s) sum += (v = std::exp(v - mx));
                    for (std::int64_t j = lo; j <= t; ++j)
                        for (std::int64_t i = 0; i < hd; ++i)
                            att[static_cast<std::size_t>(h * hd + i)] += s[static_cast<std::size_t>(j - lo)] / sum * V[static_cast<std::size_t>(j)][static_cast<std::size_t>(g * hd + i)];
                }
                vec o = mv(wo, att);
                opt_bias(o, p + "attn_output.bias");
                if (r.post_norms) o = norm(o, p + "post_attention_norm.weight", "");
                add_to(x[static_cast<std::size_t>(t)], o);
            }
            for (std::int64_t t = 0; t < n; ++t) {
                const vec h = norm(x[static_cast<std::size_t>(t)], p + "ffn_norm.weight", p + "ffn_norm.bias");
                vec a;
                if (r.ffn == recipe::gelu_mlp) {
                    a = mv(matrix(p + "ffn_up.weight"), h);
                    opt_bias(a, p + "ffn_up.bias");
                    for (auto& v : a) v = gelu(v);
                } else if (r.ffn == recipe::fused_swiglu) {
                    const vec gu = mv(matrix(p + "ffn_up.weight"), h);
                    const std::size_t nf = gu.size() / 2;
                    for (std::size_t i = 0; i < nf; ++i) a.push_back(silu(gu[i]) * gu[nf + i]);
                } else {
                    const vec g = mv(matrix(p + "ffn_gate.weight"), h), u = mv(matrix(p + "ffn_up.weight"), h);
                    for (std::size_t i = 0; i < g.size(); ++i) a.push_back((r.ffn == recipe::geglu ? gelu(g[i]) : silu(g[i])) * u[i]);
                }
                vec o = mv(matrix(p + "ffn_down.weight"), a);
                opt_bias(o, p + "ffn_down.bias");
                if (r.post_norms) o = norm(o, p + "post_ffw_norm.weight", "");
                add_to(x[static_cast<std::size_t>(t)], o);
            }
        }
        const auto out = matrix(has("output.weight") ? "output.weight" : "token_embd.weight");
        std::vector<float> logits;
        for (std::int64_t t = 0; t < n; ++t) {
            const vec h = norm(x[static_cast<std::size_t>(t)], "output_norm.weight", "output_norm.bias");
            for (double v : mv(out, h)) logits.push_back(static_cast<float>(r.final_cap > 0 ? r.final_cap * std::tanh(v / r.final_cap) : v));
        }
        return logits;
    }
};

// Synthesises `preset` of `arch` (f32), runs minigpt (exact GELU) and the reference on 40 tokens.
void check_synth(const std::string& arch, synth_preset preset, const recipe& r, std::int64_t n_ctx = 64) {
    SCOPED_TRACE(arch);
    io::gguf_writer w;
    synthesize(w, preset, dtype::f32, 11);
    if (r.mscale != 1.0) w.set(arch + ".rope.scaling.attn_factor", static_cast<float>(r.mscale));
    if (r.rope_base > 0.0f) w.set(arch + ".rope.freq_base", r.rope_base);
    auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
    auto file = std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, arch + ".gguf"));
    auto m = model::from_gguf(file, {.gelu = gelu_mode::exact});
    EXPECT_EQ(m->config().arch_name, arch);
    std::vector<std::int32_t> ids;
    for (int i = 0; i < 40; ++i) ids.push_back((i * 97 + 5) % 500);
    context ctx(m, {.n_ctx = n_ctx, .n_batch = 16});  // several chunks: the cache and positions carry over
    ctx.decode(ids, logits_for::all);
    const ref_model ref{{*file, {}}, m->config(), r};
    const auto want = ref.forward(ids);
    float scale = 0;
    for (float v : want) scale = std::max(scale, std::fabs(v));
    const float diff = max_abs_diff(ctx.logits(), want);
    EXPECT_LT(diff, 1e-4f * std::max(1.0f, scale));
    EXPECT_GT(scale, 0.05f);  // the logits are not degenerate
    std::printf("[ measured ] synth %s vs scalar reference: max |diff| %.3g (max |logit| %.3g)\n", arch.c_str(), diff, scale);
}

}  // namespace

TEST(Architectures, LlamaWithBiasesAndRopeFreqsMatchesReference) {
    auto p = find_synth_preset("llama", "tiny");
    p.optional_tensors = true;
    recipe r;
    r.rope_factors = "rope_freqs.weight";
    check_synth("llama", p, r);
}

TEST(Architectures, Qwen2MatchesReference) {
    recipe r;
    r.neox = true;
    check_synth("qwen2", find_synth_preset("qwen2", "tiny"), r);
}

TEST(Architectures, Phi3LongRopeMatchesReference) {
    auto p = find_synth_preset("phi3", "tiny");
    p.optional_tensors = true;  // rope_factors_long / _short
    recipe r;
    r.neox = true;
    r.fused_qkv = true;
    r.ffn = recipe::fused_swiglu;
    r.mscale = 1.1902380714238083;  // Phi-3-mini-128k's attn_factor: multiplies cos and sin
    r.rope_factors = "rope_factors_short.weight";  // n_ctx 64 <= original context 256
    check_synth("phi3", p, r);
    r.rope_factors = "rope_factors_long.weight";   // a context longer than the original one
    check_synth("phi3", p, r, 512);
}

TEST(Architectures, GemmaMatchesReference) {
    const auto p = find_synth_preset("gemma", "tiny");
    recipe r;
    r.neox = true;
    r.embd_scale = std::sqrt(static_cast<double>(static_cast<float>(p.n_embd)));
    r.ffn = recipe::geglu;
    check_synth("gemma", p, r);
}

TEST(Architectures, Gemma2WindowAndCapsMatchReference) {
    const auto p = find_synth_preset("gemma2", "tiny");
    recipe r;
    r.neox = true;
    r.embd_scale = std::sqrt(static_cast<double>(p.n_embd));
    r.ffn = recipe::geglu;
    r.post_norms = true;
    r.attn_cap = p.attn_softcap;
    r.final_cap = p.final_softcap;
    r.window = p.sliding_window;  // 8 < 40 tokens: the window really cuts
    r.period = 2;
    r.attn_scale = 1.0 / std::sqrt(static_cast<double>(p.head_dim));
    check_synth("gemma2", p, r);
}

TEST(Architectures, Qwen3QkNormMatchesReference) {
    recipe r;
    r.neox = true;
    r.qk_norm = true;
    check_synth("qwen3", find_synth_preset("qwen3", "tiny"), r);
}

TEST(Architectures, Gemma3MatchesReference) {
    // 7 layers: layers 0-4 and 6 slide (window 8, rope base 10000), layer 5 is global (base 1e6).
    const auto p = find_synth_preset("gemma3", "tiny");
    recipe r;
    r.neox = true;
    r.embd_scale = std::sqrt(static_cast<double>(p.n_embd));
    r.ffn = recipe::geglu;
    r.post_norms = true;
    r.qk_norm = true;
    r.window = p.sliding_window;
    r.period = 6;
    r.rope_base = 1000000.0f;
    r.rope_base_local = 10000.0;
    r.attn_scale = 1.0 / std::sqrt(static_cast<double>(p.head_dim));
    check_synth("gemma3", p, r);
}

TEST(Architectures, Starcoder2MatchesReference) {
    recipe r;
    r.layer_norm = true;
    r.neox = true;
    r.ffn = recipe::gelu_mlp;
    check_synth("starcoder2", find_synth_preset("starcoder2", "tiny"), r);
}

TEST(Architectures, Gpt2MatchesReference) {
    recipe r;
    r.layer_norm = true;
    r.fused_qkv = true;
    r.rope = false;
    r.learned_pos = true;
    r.ffn = recipe::gelu_mlp;
    check_synth("gpt2", find_synth_preset("gpt2", "tiny"), r);
}

// ---- strict loading ----

namespace {

// Synthesises `arch`'s tiny preset and rewrites it: `edit` may change keys, every tensor but
// `drop` is copied, then `add` may append tensors. Expects the load to fail with a message
// containing every one of `needles`.
template <class Edit, class Add>
void expect_load_error(const std::string& arch, Edit edit, const std::string& drop, Add add, std::vector<std::string> needles) {
    SCOPED_TRACE(arch + " expecting '" + needles[0] + "'");
    io::gguf_writer first;
    synthesize(first, find_synth_preset(arch, "tiny"), dtype::f32, 3);
    auto src_bytes = std::make_shared<const std::vector<std::byte>>(first.finish_to_memory());
    const auto src = io::gguf_file::from_memory(src_bytes, "synth.gguf");
    io::gguf_writer w;
    w.copy_metadata_from(src);
    edit(w);
    for (const auto& t : src.tensors())
        if (t.name != drop) w.add_tensor(t.name, src.get_tensor(t.name));
    add(w);
    auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
    try {
        model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, "strict.gguf")));
        ADD_FAILURE() << "no error";
    } catch (const error& e) {
        for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
}

void no_keys(io::gguf_writer&) {}
void no_tensors(io::gguf_writer&) {}

}  // namespace

TEST(Architectures, StrictLoadingNamesWhatIsWrong) {
    auto f32 = [](std::initializer_list<std::int64_t> shape) {
        auto t = tensor::empty(dtype::f32, shape);
        std::fill(t.data<float>(), t.data<float>() + t.n_elements(), 1.0f);
        return t;
    };
    // A tensor the architecture does not use.
    expect_load_error("llama", no_keys, "", [&](io::gguf_writer& w) { w.add_tensor("blk.0.attn_q_norm.weight", f32({16})); },
                      {"blk.0.attn_q_norm.weight", "does not use"});
    // Gemma never reads output.weight (always tied): one in the file is left over, as in llama.cpp.
    expect_load_error("gemma", no_keys, "", [&](io::gguf_writer& w) { w.add_tensor("output.weight", f32({512, 64})); },
                      {"output.weight", "does not use"});
    // A missing tensor: qwen2's biases are required.
    expect_load_error("qwen2", no_keys, "blk.1.attn_k.bias", no_tensors, {"missing", "blk.1.attn_k.bias"});
    // A wrong shape.
    expect_load_error("starcoder2", no_keys, "blk.0.ffn_up.bias", [&](io::gguf_writer& w) { w.add_tensor("blk.0.ffn_up.bias", f32({100})); },
                      {"blk.0.ffn_up.bias", "(100)"});
    // Keys that change the math and are not implemented.
    expect_load_error("llama", [](io::gguf_writer& w) { w.set("llama.rope.scaling.type", std::string("yarn")); }, "", no_tensors,
                      {"llama.rope.scaling.type", "yarn"});
    expect_load_error("llama", [](io::gguf_writer& w) { w.set("llama.expert_count", std::uint32_t{8}); }, "", no_tensors,
                      {"llama.expert_count"});
    expect_load_error("phi3", [](io::gguf_writer& w) { w.set("phi3.attention.value_length", std::uint32_t{8}); }, "", no_tensors,
                      {"phi3.attention.value_length"});
    expect_load_error("gemma2", [](io::gguf_writer& w) { w.set("gemma2.rope.dimension_sections", std::uint32_t{4}); }, "", no_tensors,
                      {"gemma2.rope.dimension_sections", "not supported"});
    expect_load_error("gpt2", [](io::gguf_writer& w) { w.set("gpt2.attention.causal", false); }, "", no_tensors,
                      {"gpt2.attention.causal"});
}

TEST(Architectures, LinearRopeScalingDividesPositions) {
    // rope.scaling.type linear with factor 4: position p rotates as p/4 (llama.cpp's freq_scale).
    io::gguf_writer w;
    synthesize(w, find_synth_preset("llama", "tiny"), dtype::f32, 5);
    w.set("llama.rope.scaling.type", std::string("linear"));
    w.set("llama.rope.scaling.factor", 4.0f);
    auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
    auto m = model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, "linear.gguf")));
    EXPECT_FLOAT_EQ(m->config().rope_freq_scale, 0.25f);
}

TEST(Architectures, EveryArchitectureHasASynthPresetThatLoads) {
    for (const auto* d : architectures()) {
        SCOPED_TRACE(d->name);
        io::gguf_writer w;
        const auto c = synthesize(w, find_synth_preset(d->name, "tiny"), dtype::f16, 1);
        auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
        auto m = model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, "any.gguf")));
        EXPECT_EQ(m->config().summary(), c.summary());
        EXPECT_GT(m->n_params(), 0u);
        context ctx(m, {.n_ctx = 32, .n_threads = 1});
        const std::int32_t id = 7;
        ctx.decode(std::span(&id, 1));
        for (float v : ctx.logits()) ASSERT_TRUE(std::isfinite(v));
    }
}
