// Inspection hooks (model/hooks.hpp) against references written here in double from the weights
// in the GGUF files, none of the library's layer code:
//  - recorded feed-forward activations equal the layer's FFN recomputed from its recorded input
//    (stories260K: SwiGLU; gpt2-tiny: biased GELU MLP; synthesised Gemma 2: GeGLU; Phi-3: fused gate|up);
//  - zeroing neuron j gives the logits of a model whose down projection lacks column j (written here);
//  - attention weights per head sum to 1 and equal the softmax of q.k recomputed from the layer's
//    input (RoPE, GQA, Gemma 2's soft-cap and sliding window), and the kernel's record equals the
//    double reference kernel's on long f16 caches (several online-softmax blocks);
//  - the residual stream after the last layer gives the logits through the final norm and output
//    matrix; patching every position's residual with another prompt's reproduces that prompt's run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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

using vec = std::vector<double>;

using minigpt::test::max_abs_diff;

enum class ffn_kind { swiglu, gelu_mlp, geglu, fused_swiglu };

// One layer's pieces in double, from the file's tensors and the config's hyper-parameters.
struct reference : minigpt::test::double_tensors {
    const model_config& c;
    ffn_kind ffn;

    void add_bias(vec& y, const std::string& n) const {
        if (has(n)) for (std::size_t i = 0; i < y.size(); ++i) y[i] += vector(n)[i];
    }
    vec norm(const vec& x, const std::string& prefix) const {
        const vec& g = vector(prefix + ".weight");
        const double n = static_cast<double>(x.size());
        vec y(x.size());
        if (c.norm == norm_kind::layer) {
            double mean = 0, var = 0;
            for (double v : x) mean += v / n;
            for (double v : x) var += (v - mean) * (v - mean) / n;
            const vec& b = vector(prefix + ".bias");
            for (std::size_t i = 0; i < x.size(); ++i) y[i] = (x[i] - mean) / std::sqrt(var + c.norm_eps) * g[i] + b[i];
        } else {
            double ss = 0;
            for (double v : x) ss += v * v / n;
            for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(ss + c.norm_eps) * g[i];
        }
        return y;
    }
    static double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
    static double silu(double x) { return x / (1.0 + std::exp(-x)); }

    // The activation (n_ff) of layer l's feed-forward block for its normed input n.
    vec ffn_activation(std::int64_t l, const vec& n) const {
        const std::string p = "blk." + std::to_string(l) + ".";
        vec a;
        if (ffn == ffn_kind::gelu_mlp) {
            a = mv(matrix(p + "ffn_up.weight"), n);
            add_bias(a, p + "ffn_up.bias");
            for (auto& v : a) v = gelu(v);
        } else if (ffn == ffn_kind::fused_swiglu) {
            const vec gu = mv(matrix(p + "ffn_up.weight"), n);
            const std::size_t nf = gu.size() / 2;
            for (std::size_t i = 0; i < nf; ++i) a.push_back(silu(gu[i]) * gu[nf + i]);
        } else {
            const vec g = mv(matrix(p + "ffn_gate.weight"), n), u = mv(matrix(p + "ffn_up.weight"), n);
            for (std::size_t i = 0; i < g.size(); ++i) a.push_back((ffn == ffn_kind::geglu ? gelu(g[i]) : silu(g[i])) * u[i]);
        }
        return a;
    }

    // The embedding row of token id at position pos (the input of layer 0).
    vec embedding(std::int32_t id, std::int64_t pos) const {
        vec e = matrix("token_embd.weight")[static_cast<std::size_t>(id)];
        if (c.embd_scale > 0.0f) for (auto& v : e) v *= static_cast<double>(c.embd_scale);
        if (has("position_embd.weight"))
            for (std::size_t i = 0; i < e.size(); ++i) e[i] += matrix("position_embd.weight")[static_cast<std::size_t>(pos)][i];
        return e;
    }

    void rope(vec& x, std::int64_t n_heads, std::int64_t pos) const {
        const std::int64_t hd = c.head_dim, n_rot = c.n_rot, half = n_rot / 2;
        const bool neox = c.rope == kernels::rope_layout::neox;
        for (std::int64_t h = 0; h < n_heads; ++h)
            for (std::int64_t i = 0; i < half; ++i) {
                const double th = static_cast<double>(pos) * std::pow(static_cast<double>(c.rope_freq_base), -2.0 * i / n_rot);
                const auto a = static_cast<std::size_t>(h * hd + (neox ? i : 2 * i));
                const auto b = static_cast<std::size_t>(h * hd + (neox ? i + half : 2 * i + 1));
                const double x0 = x[a], x1 = x[b];
                x[a] = x0 * std::cos(th) - x1 * std::sin(th);
                x[b] = x0 * std::sin(th) + x1 * std::cos(th);
            }
    }

    // Softmax weights (n_heads, t + 1) of query position t of layer l over keys 0..t, from the
    // layer inputs xs (positions 0..t).
    std::vector<vec> attention_weights(std::int64_t l, const std::vector<vec>& xs, std::int64_t t) const {
        const std::string p = "blk." + std::to_string(l) + ".";
        const std::int64_t hd = c.head_dim, nh = c.n_head, nkv = c.n_head_kv, qd = nh * hd, kvd = nkv * hd;
        auto qk = [&](std::int64_t pos, vec& q, vec& k) {
            const vec h = norm(xs[static_cast<std::size_t>(pos)], p + "attn_norm");
            if (has(p + "attn_qkv.weight")) {
                vec qkv = mv(matrix(p + "attn_qkv.weight"), h);
                add_bias(qkv, p + "attn_qkv.bias");
                q.assign(qkv.begin(), qkv.begin() + qd);
                k.assign(qkv.begin() + qd, qkv.begin() + qd + kvd);
            } else {
                q = mv(matrix(p + "attn_q.weight"), h), k = mv(matrix(p + "attn_k.weight"), h);
                add_bias(q, p + "attn_q.bias"), add_bias(k, p + "attn_k.bias");
            }
            if (c.n_rot > 0 && !c.learned_positions) rope(q, nh, pos), rope(k, nkv, pos);
        };
        vec q, k, unused;
        qk(t, q, unused);
        std::vector<vec> keys;
        for (std::int64_t j = 0; j <= t; ++j) {
            vec qj;
            qk(j, qj, k);
            keys.push_back(k);
        }
        const std::int64_t w = c.window(l), lo = w > 0 ? std::max<std::int64_t>(0, t - w + 1) : 0;
        std::vector<vec> out(static_cast<std::size_t>(nh), vec(static_cast<std::size_t>(t + 1), 0.0));
        for (std::int64_t h = 0; h < nh; ++h) {
            const std::int64_t g = h / (nh / nkv);
            vec s;
            for (std::int64_t j = lo; j <= t; ++j) {
                double d = 0;
                for (std::int64_t i = 0; i < hd; ++i)
                    d += q[static_cast<std::size_t>(h * hd + i)] * keys[static_cast<std::size_t>(j)][static_cast<std::size_t>(g * hd + i)];
                d *= static_cast<double>(c.query_scale());
                if (c.attn_softcap > 0) d = c.attn_softcap * std::tanh(d / c.attn_softcap);
                s.push_back(d);
            }
            const double mx = *std::max_element(s.begin(), s.end());
            double sum = 0;
            for (auto& v : s) sum += (v = std::exp(v - mx));
            for (std::int64_t j = lo; j <= t; ++j) out[static_cast<std::size_t>(h)][static_cast<std::size_t>(j)] = s[static_cast<std::size_t>(j - lo)] / sum;
        }
        return out;
    }

    // Logits of the residual x after the last layer.
    vec logits(const vec& x) const {
        const vec h = norm(x, "output_norm");
        vec y = mv(matrix(has("output.weight") ? "output.weight" : "token_embd.weight"), h);
        if (c.final_softcap > 0) for (auto& v : y) v = c.final_softcap * std::tanh(v / c.final_softcap);
        return y;
    }
};

struct subject {
    std::shared_ptr<const io::gguf_file> file;
    std::shared_ptr<const model> m;
    ffn_kind ffn;
};

subject shared_model(const std::string& rel, ffn_kind ffn) {
    auto f = std::make_shared<const io::gguf_file>(io::gguf_file::open(test::shared_path(rel)));
    return {f, model::from_gguf(f, {.gelu = gelu_mode::exact}), ffn};
}

subject synth_model(const std::string& arch, ffn_kind ffn) {
    io::gguf_writer w;
    synthesize(w, find_synth_preset(arch, "tiny"), dtype::f32, 5);
    auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
    auto f = std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, arch + ".gguf"));
    return {f, model::from_gguf(f, {.gelu = gelu_mode::exact}), ffn};
}

std::vector<std::int32_t> prompt_ids(const model& m, std::int64_t n, std::int32_t salt = 0) {
    std::vector<std::int32_t> ids;
    const auto n_vocab = static_cast<std::int32_t>(std::min<std::int64_t>(m.config().n_vocab, 500));
    for (std::int64_t i = 0; i < n; ++i) ids.push_back(static_cast<std::int32_t>((i * 97 + 5 + salt) % n_vocab));
    return ids;
}

// Decodes ids in chunks of 16 then one by one for the last four: hooks see prefill and decode.
void feed(context& ctx, const std::vector<std::int32_t>& ids, logits_for which = logits_for::last) {
    const std::size_t split = ids.size() - 4;
    ctx.decode(std::span(ids).first(split), which);
    for (std::size_t i = split; i < ids.size(); ++i) ctx.decode(std::span(ids).subspan(i, 1), which);
}

// Every layer's recorded FFN input and activation, keyed by (layer, position).
void check_ffn(const subject& s) {
    const auto& c = s.m->config();
    std::map<std::pair<std::int64_t, std::int64_t>, std::vector<float>> input, act;
    inspection_hooks h;
    auto keep = [](auto& into) {
        return [&into](const hook_site& site, auto values) {
            for (std::int64_t t = 0; t < site.n_tokens; ++t)
                into[{site.layer, site.position(t)}].assign(values.begin() + t * site.width, values.begin() + (t + 1) * site.width);
        };
    };
    h.on_ffn_input = keep(input);
    h.on_ffn_activation = keep(act);
    context ctx(s.m, {.n_ctx = 64, .n_batch = 16});
    ctx.set_hooks(h);
    const auto ids = prompt_ids(*s.m, 40);
    feed(ctx, ids);
    ASSERT_EQ(act.size(), static_cast<std::size_t>(c.n_layer) * ids.size());
    const reference ref{{*s.file, {}}, c, s.ffn};
    double worst = 0, scale = 0;
    for (const auto& [key, a] : act) {
        const auto& n = input.at(key);
        ASSERT_EQ(a.size(), static_cast<std::size_t>(c.n_ff));
        ASSERT_EQ(n.size(), static_cast<std::size_t>(c.n_embd));
        const vec want = ref.ffn_activation(key.first, vec(n.begin(), n.end()));
        for (std::size_t i = 0; i < want.size(); ++i) {
            worst = std::max(worst, std::fabs(a[i] - want[i]));
            scale = std::max(scale, std::fabs(want[i]));
        }
    }
    EXPECT_LT(worst, 1e-5 * std::max(1.0, scale)) << c.arch_name;
    EXPECT_GT(scale, 1e-3) << "degenerate activations";
    std::printf("[ measured ] %s FFN activations vs scalar double: max |diff| %.3g (max |activation| %.3g)\n", c.arch_name.c_str(), worst,
                scale);
}

// Every layer's recorded attention weights against the scalar recomputation from the layer inputs
// (embeddings for layer 0, the recorded residual of the layer before otherwise).
void check_attention(const subject& s) {
    const auto& c = s.m->config();
    std::map<std::pair<std::int64_t, std::int64_t>, std::vector<float>> weights, resid;  // rows (n_heads, pos + 1)
    double worst_sum = 0, worst_outside = 0;
    inspection_hooks h;
    h.on_attention = [&](const hook_site& site, std::span<const float> w) {
        EXPECT_EQ(site.width, site.n_heads * site.n_keys);
        for (std::int64_t t = 0; t < site.n_tokens; ++t) {
            const std::int64_t pos = site.position(t), lo = c.window(site.layer) > 0 ? std::max<std::int64_t>(0, pos - c.window(site.layer) + 1) : 0;
            auto& row = weights[{site.layer, pos}];
            for (std::int64_t hd = 0; hd < site.n_heads; ++hd) {
                const float* r = w.data() + (t * site.n_heads + hd) * site.n_keys;
                double sum = 0;
                for (std::int64_t j = 0; j < site.n_keys; ++j) {
                    if (j < lo || j > pos) worst_outside = std::max(worst_outside, std::fabs(static_cast<double>(r[j])));
                    else sum += r[j];
                }
                worst_sum = std::max(worst_sum, std::fabs(sum - 1.0));
                row.insert(row.end(), r, r + pos + 1);
            }
        }
    };
    h.on_residual = [&](const hook_site& site, std::span<float> x) {
        for (std::int64_t t = 0; t < site.n_tokens; ++t)
            resid[{site.layer, site.position(t)}].assign(x.begin() + t * site.width, x.begin() + (t + 1) * site.width);
    };
    context ctx(s.m, {.n_ctx = 64, .n_batch = 16});
    ctx.set_hooks(h);
    const auto ids = prompt_ids(*s.m, 36);
    feed(ctx, ids);
    EXPECT_LT(worst_sum, 1e-5);
    EXPECT_EQ(worst_outside, 0.0);
    const reference ref{{*s.file, {}}, c, s.ffn};
    double worst = 0;
    for (std::int64_t l = 0; l < c.n_layer; ++l) {
        std::vector<vec> xs;
        for (std::int64_t p = 0; p < static_cast<std::int64_t>(ids.size()); ++p) {
            if (l == 0) xs.push_back(ref.embedding(ids[static_cast<std::size_t>(p)], p));
            else { const auto& r = resid.at({l - 1, p}); xs.emplace_back(r.begin(), r.end()); }
        }
        for (std::int64_t t : {std::int64_t{0}, std::int64_t{7}, std::int64_t{20}, static_cast<std::int64_t>(ids.size()) - 1}) {
            const auto want = ref.attention_weights(l, xs, t);
            const auto& got = weights.at({l, t});
            ASSERT_EQ(got.size(), static_cast<std::size_t>(c.n_head * (t + 1)));
            for (std::int64_t hd = 0; hd < c.n_head; ++hd)
                for (std::int64_t j = 0; j <= t; ++j)
                    worst = std::max(worst, std::fabs(got[static_cast<std::size_t>(hd * (t + 1) + j)] - want[static_cast<std::size_t>(hd)][static_cast<std::size_t>(j)]));
        }
    }
    EXPECT_LT(worst, 1e-5) << c.arch_name;
    std::printf("[ measured ] %s attention weights vs scalar double: max |diff| %.3g, max |row sum - 1| %.3g\n", c.arch_name.c_str(), worst,
                worst_sum);
}

// The model with columns [first, first + n) of tensor `name` zeroed, written here.
std::shared_ptr<const model> without_columns(const io::gguf_file& f, const std::string& name, std::int64_t first, std::int64_t n) {
    io::gguf_writer w;
    w.copy_metadata_from(f);
    std::vector<float> m;  // (rows, cols)
    for (const auto& info : f.tensors()) {
        const tensor t = f.get_tensor(info.name);
        if (info.name != name) { w.add_tensor(info.name, t); continue; }
        EXPECT_EQ(t.type(), dtype::f32);
        m.assign(t.data<float>(), t.data<float>() + t.n_elements());
        for (std::int64_t r = 0; r < t.dim(0); ++r)
            for (std::int64_t j = first; j < first + n; ++j) m[static_cast<std::size_t>(r * t.dim(1) + j)] = 0.0f;
        w.add_tensor(info.name, tensor::view(dtype::f32, {t.dim(0), t.dim(1)}, m.data()));
    }
    auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
    return model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, "ablated.gguf")), {.gelu = gelu_mode::exact});
}

std::vector<float> logits_of(const std::shared_ptr<const model>& m, const std::vector<std::int32_t>& ids, const inspection_hooks* h = nullptr) {
    context ctx(m, {.n_ctx = 64, .n_batch = 16});
    if (h) ctx.set_hooks(*h);
    ctx.decode(ids, logits_for::all);
    return {ctx.logits().begin(), ctx.logits().end()};
}

void check_ablation(const subject& s, std::int64_t layer, std::int64_t neuron) {
    const auto ids = prompt_ids(*s.m, 30);
    inspection_hooks h;
    h.layers = {layer};
    h.on_ffn_activation = [&](const hook_site& site, std::span<float> a) {
        EXPECT_EQ(site.layer, layer);
        for (std::int64_t t = 0; t < site.n_tokens; ++t) a[static_cast<std::size_t>(t * site.width + neuron)] = 0.0f;
    };
    const auto ablated = logits_of(s.m, ids, &h);
    const auto want = logits_of(without_columns(*s.file, "blk." + std::to_string(layer) + ".ffn_down.weight", neuron, 1), ids);
    const float d = max_abs_diff(ablated, want);
    const float effect = max_abs_diff(logits_of(s.m, ids), want);
    EXPECT_LT(d, 1e-5f);
    EXPECT_GT(effect, 1e-4f) << "the neuron does not matter: the test could not fail";
    std::printf("[ measured ] %s: zeroing neuron %lld of layer %lld vs removing its down-projection column: max |diff| %.3g (effect %.3g)\n",
                s.m->config().arch_name.c_str(), static_cast<long long>(neuron), static_cast<long long>(layer), d, effect);
}

// Zeroing head h's attention weights (every token) gives the logits of a model whose attention
// output matrix lacks the head's columns: the head's output is 0 either way.
void check_head_ablation(const subject& s, std::int64_t layer, std::int64_t head) {
    const auto& c = s.m->config();
    const auto ids = prompt_ids(*s.m, 30);
    inspection_hooks h;
    h.layers = {layer};
    h.on_attention = [&](const hook_site& site, std::span<float> w) {
        for (std::int64_t t = 0; t < site.n_tokens; ++t)
            std::fill_n(w.begin() + (t * site.n_heads + head) * site.n_keys, site.n_keys, 0.0f);
    };
    const auto ablated = logits_of(s.m, ids, &h);
    const auto want = logits_of(without_columns(*s.file, "blk." + std::to_string(layer) + ".attn_output.weight", head * c.head_dim, c.head_dim), ids);
    const float d = max_abs_diff(ablated, want), effect = max_abs_diff(logits_of(s.m, ids), want);
    EXPECT_LT(d, 1e-5f);
    EXPECT_GT(effect, 1e-4f) << "the head does not matter: the test could not fail";
    std::printf("[ measured ] %s: zeroing head %lld of layer %lld vs removing its attn_output columns: max |diff| %.3g (effect %.3g)\n",
                c.arch_name.c_str(), static_cast<long long>(head), static_cast<long long>(layer), d, effect);
}

}  // namespace

TEST(Inspection, FfnActivationsStories260K) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    check_ffn(shared_model("models/stories260K.gguf", ffn_kind::swiglu));
}

TEST(Inspection, FfnActivationsGpt2Tiny) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    check_ffn(shared_model("models/gpt2-tiny.gguf", ffn_kind::gelu_mlp));
}

TEST(Inspection, FfnActivationsGemma2AndPhi3) {
    check_ffn(synth_model("gemma2", ffn_kind::geglu));
    check_ffn(synth_model("phi3", ffn_kind::fused_swiglu));
}

TEST(Inspection, ZeroingANeuronEqualsRemovingItsColumn) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    check_ablation(shared_model("models/stories260K.gguf", ffn_kind::swiglu), 2, 17);
    check_ablation(shared_model("models/gpt2-tiny.gguf", ffn_kind::gelu_mlp), 0, 100);
    check_ablation(synth_model("gemma2", ffn_kind::geglu), 1, 5);
}

TEST(Inspection, ZeroingAHeadsWeightsEqualsRemovingItsOutputColumns) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    check_head_ablation(shared_model("models/stories260K.gguf", ffn_kind::swiglu), 1, 5);
    check_head_ablation(shared_model("models/gpt2-tiny.gguf", ffn_kind::gelu_mlp), 1, 2);
    check_head_ablation(synth_model("gemma2", ffn_kind::geglu), 0, 3);  // a sliding-window layer
}

TEST(Inspection, AttentionWeightsStories260K) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    check_attention(shared_model("models/stories260K.gguf", ffn_kind::swiglu));
}

TEST(Inspection, AttentionWeightsGpt2Tiny) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    check_attention(shared_model("models/gpt2-tiny.gguf", ffn_kind::gelu_mlp));
}

TEST(Inspection, AttentionWeightsGemma2CapAndWindow) {
    check_attention(synth_model("gemma2", ffn_kind::geglu));  // window 8 on even layers, soft-cap 3
}

// The kernel's record against the double reference kernel over long f16 and f32 caches: several
// online-softmax blocks (128 keys each), GQA, a window and a cap.
TEST(Inspection, AttentionKernelRecordMatchesReference) {
    for (dtype kv_type : {dtype::f32, dtype::f16})
        for (std::int64_t window : {std::int64_t{0}, std::int64_t{150}}) {
            const std::int64_t n_heads = 6, n_kv = 2, hd = 40, n_ctx = 320, n_tokens = 5, pos0 = 300;
            const auto q = test::gaussian(n_tokens * n_heads * hd, 1);
            const auto k32 = test::gaussian(n_ctx * n_kv * hd, 2), v32 = test::gaussian(n_ctx * n_kv * hd, 3);
            std::vector<std::uint16_t> k16, v16;
            for (float x : k32) k16.push_back(fp32_to_fp16(x));
            for (float x : v32) v16.push_back(fp32_to_fp16(x));
            kernels::attention_params p;
            p.n_heads = n_heads, p.n_kv_heads = n_kv, p.head_dim = hd, p.scale = 0.2f, p.softcap = 4.0f, p.window = window;
            p.kv_type = kv_type;
            p.k = kv_type == dtype::f32 ? static_cast<const void*>(k32.data()) : k16.data();
            p.v = kv_type == dtype::f32 ? static_cast<const void*>(v32.data()) : v16.data();
            p.pos0 = pos0;
            p.weights_stride = pos0 + n_tokens;
            std::vector<float> got(static_cast<std::size_t>(n_tokens * n_heads * p.weights_stride), -1.0f);
            std::vector<float> want(got.size(), -1.0f), out(static_cast<std::size_t>(n_tokens * n_heads * hd)), out_ref(out.size());
            p.weights = got.data();
            kernels::attention(p, q.data(), out.data(), n_tokens);
            p.weights = want.data();
            kernels::ref::attention(p, q.data(), out_ref.data(), n_tokens);
            EXPECT_LT(max_abs_diff(got, want), 1e-6f);
            EXPECT_LT(max_abs_diff(out, out_ref), 1e-4f);
            p.weights_stride = pos0 + n_tokens - 1;  // does not cover the last position
            EXPECT_THROW(kernels::attention(p, q.data(), out.data(), n_tokens), shape_error);
        }
}

// The residual after the last layer turned into logits by the final norm and output matrix in
// double; and a residual patched at every position with another prompt's gives that prompt's logits.
TEST(Inspection, ResidualStreamReadAndPatch) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto s = shared_model("models/stories260K.gguf", ffn_kind::swiglu);
    const auto& c = s.m->config();
    const auto a = prompt_ids(*s.m, 24), b = prompt_ids(*s.m, 24, 31);
    std::vector<float> last, donor;  // (n_tokens, n_embd) residual after the last layer / after layer 1
    inspection_hooks rec;
    rec.on_residual = [&](const hook_site& site, std::span<float> x) {  // chunks arrive in order
        if (site.layer == c.n_layer - 1) last.insert(last.end(), x.begin(), x.end());
        if (site.layer == 1) donor.insert(donor.end(), x.begin(), x.end());
    };
    const auto logits_a = logits_of(s.m, a, &rec);
    const reference ref{{*s.file, {}}, c, s.ffn};
    double worst = 0;
    for (std::int64_t t = 0; t < static_cast<std::int64_t>(a.size()); ++t) {
        const vec want = ref.logits(vec(last.begin() + t * c.n_embd, last.begin() + (t + 1) * c.n_embd));
        for (std::int64_t i = 0; i < c.n_vocab; ++i)
            worst = std::max(worst, std::fabs(logits_a[static_cast<std::size_t>(t * c.n_vocab + i)] - want[static_cast<std::size_t>(i)]));
    }
    EXPECT_LT(worst, 1e-4);
    inspection_hooks patch;
    patch.layers = {1};
    patch.on_residual = [&](const hook_site& site, std::span<float> x) {
        for (std::int64_t t = 0; t < site.n_tokens; ++t)
            std::copy_n(donor.begin() + site.position(t) * site.width, site.width, x.begin() + t * site.width);
    };
    const auto logits_b = logits_of(s.m, b);
    const auto patched = logits_of(s.m, b, &patch);
    EXPECT_GT(max_abs_diff(logits_b, logits_a), 1e-2f);
    EXPECT_LT(max_abs_diff(patched, logits_a), 1e-5f);
    std::printf("[ measured ] stories260K residual -> logits vs double: %.3g; patched run vs donor run: %.3g\n", worst,
                max_abs_diff(patched, logits_a));
}

TEST(Inspection, HooksOffAndReadOnlyHooksLeaveLogitsUnchanged) {
    auto s = synth_model("llama", ffn_kind::swiglu);
    const auto ids = prompt_ids(*s.m, 20);
    inspection_hooks h;
    std::int64_t calls = 0;
    h.on_ffn_activation = [&](const hook_site&, std::span<float>) { ++calls; };
    h.on_attention = [&](const hook_site&, std::span<const float>) { ++calls; };
    h.layers = {1};
    EXPECT_EQ(logits_of(s.m, ids), logits_of(s.m, ids, &h));
    EXPECT_EQ(calls, 4);  // two chunks (n_batch 16), one layer, two hooks
    context ctx(s.m, {.n_ctx = 32});
    EXPECT_EQ(ctx.hooks(), nullptr);
    ctx.set_hooks(h);
    ASSERT_NE(ctx.hooks(), nullptr);
    auto forked = ctx.fork();
    EXPECT_NE(forked->hooks(), nullptr);
    ctx.clear_hooks();
    EXPECT_EQ(ctx.hooks(), nullptr);
    h.layers = {2};
    try {
        ctx.set_hooks(h);
        ADD_FAILURE() << "no error for layer 2 of a 2-layer model";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("layer 2"), std::string::npos) << e.what();
    }
}
