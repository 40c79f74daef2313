// Vector kernels of the forward pass: dot, axpy, scale, add, RMSNorm, LayerNorm, softmax,
// GELU, SiLU, SwiGLU and argmax over contiguous f32 rows.
//
// Every kernel has an xsimd fast path here and a scalar reference in kernels::ref that
// computes in double and rounds once at the end; the tests hold the fast paths to the
// references. Reductions keep several independent accumulators (for FMA latency) and
// finish with one horizontal sum; the order differs from a serial loop, so results agree
// with the reference to rounding, not bit for bit. Row tails shorter than a batch go
// through the same batch code on a padded copy, so every element sees the same numerics.
//
// Pointers may be unaligned. "out may alias x" means out == x exactly; partially
// overlapping ranges are not supported. Lengths are element counts; a negative length,
// or a null pointer with a positive length, throws minigpt::shape_error / minigpt::error.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include <xsimd/xsimd.hpp>

#include "minigpt/core/error.hpp"
#include "minigpt/simd/vector_math.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"   // GCC 12 false positive in AVX-512 intrinsics,
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see simd/vector_math.hpp
#endif

namespace minigpt::kernels {

namespace detail {

using batch = simd::f32_batch;
inline constexpr std::int64_t k_lanes = static_cast<std::int64_t>(simd::f32_lanes);

// The throws live in separate [[noreturn]] functions so that the compiler sees the checked
// path end (otherwise GCC warns about the unreachable null dereference after the check).
[[noreturn]] inline void throw_negative_length(std::int64_t n, const char* fn) {
    throw shape_error(std::string(fn) + ": negative length " + std::to_string(n));
}
[[noreturn]] inline void throw_null(const char* fn, const char* name) {
    throw error(std::string(fn) + ": null pointer for '" + name + "'");
}
inline void check_len(std::int64_t n, const char* fn) {
    if (n < 0) throw_negative_length(n, fn);
}
inline void check_ptr(const void* p, std::int64_t n, const char* fn, const char* name) {
    if (p == nullptr && n > 0) throw_null(fn, name);
}
inline void check_eps(float eps, const char* fn) {
    if (!(eps >= 0.0f) || !std::isfinite(eps))
        throw error(std::string(fn) + ": eps must be finite and >= 0, got " + std::to_string(eps));
}

// x[i] = f(x[i]) batch by batch, the tail through a padded batch.
template <class F>
inline void map_inplace(float* x, std::int64_t n, F f) {
    std::int64_t i = 0;
    for (; i + k_lanes <= n; i += k_lanes) f(batch::load_unaligned(x + i)).store_unaligned(x + i);
    if (i < n) {
        const auto rest = static_cast<std::size_t>(n - i);
        simd::store_partial(f(simd::load_partial(x + i, rest, 0.0f)), x + i, rest);
    }
}

// out[i] = f(a[i], b[i]); out may be a or b (each batch is loaded before it is stored).
template <class F>
inline void map2(float* out, const float* a, const float* b, std::int64_t n, F f) {
    std::int64_t i = 0;
    for (; i + k_lanes <= n; i += k_lanes)
        f(batch::load_unaligned(a + i), batch::load_unaligned(b + i)).store_unaligned(out + i);
    if (i < n) {
        const auto rest = static_cast<std::size_t>(n - i);
        simd::store_partial(f(simd::load_partial(a + i, rest, 0.0f), simd::load_partial(b + i, rest, 0.0f)), out + i, rest);
    }
}

// sum of f(x[i]), four accumulators; the tail is padded with `fill`, which needs f(fill) == 0.
template <class F>
inline float map_sum(const float* x, std::int64_t n, F f, float fill = 0.0f) {
    batch s0(0.0f), s1(0.0f), s2(0.0f), s3(0.0f);
    std::int64_t i = 0;
    for (; i + 4 * k_lanes <= n; i += 4 * k_lanes) {
        s0 += f(batch::load_unaligned(x + i));
        s1 += f(batch::load_unaligned(x + i + k_lanes));
        s2 += f(batch::load_unaligned(x + i + 2 * k_lanes));
        s3 += f(batch::load_unaligned(x + i + 3 * k_lanes));
    }
    for (; i + k_lanes <= n; i += k_lanes) s0 += f(batch::load_unaligned(x + i));
    if (i < n) s1 += f(simd::load_partial(x + i, static_cast<std::size_t>(n - i), fill));
    return simd::hsum((s0 + s1) + (s2 + s3));
}

// Largest non-NaN element, or -inf if there is none.
inline float max_ignore_nan(const float* x, std::int64_t n) {
    const float ninf = -std::numeric_limits<float>::infinity();
    batch m(ninf);
    std::int64_t i = 0;
    for (; i + k_lanes <= n; i += k_lanes) m = simd::max_ignore_nan(m, batch::load_unaligned(x + i));
    if (i < n) m = simd::max_ignore_nan(m, simd::load_partial(x + i, static_cast<std::size_t>(n - i), ninf));
    return simd::hmax(m);
}

// The limits softmax tends to when the maximum is infinite: all -inf -> uniform; some
// +inf -> those share the mass equally. A NaN anywhere makes the whole row NaN.
template <class Real>
inline void softmax_infinite_max(Real* x, std::int64_t n, bool max_is_pos_inf) {
    std::int64_t count = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        if (std::isnan(x[i])) {
            for (std::int64_t j = 0; j < n; ++j) x[j] = std::numeric_limits<Real>::quiet_NaN();
            return;
        }
        if (!max_is_pos_inf || x[i] == std::numeric_limits<Real>::infinity()) ++count;
    }
    const Real share = Real(1) / static_cast<Real>(count);
    for (std::int64_t i = 0; i < n; ++i)
        x[i] = (!max_is_pos_inf || x[i] == std::numeric_limits<Real>::infinity()) ? share : Real(0);
}

inline constexpr float k_sqrt_2_over_pi = 0.7978845608028654f;
inline constexpr float k_gelu_cubic = 0.044715f;

// 0.5 x (1 + tanh(u)) == x * sigmoid(2u): the sigmoid form has no cancellation for
// negative x (where 1 + tanh(u) loses all its digits) and needs one exp, not a tanh.
template <class A>
inline xsimd::batch<float, A> gelu_batch(const xsimd::batch<float, A>& x) {
    using B = xsimd::batch<float, A>;
    const B u2 = B(2.0f * k_sqrt_2_over_pi) * xsimd::fma(B(k_gelu_cubic) * x, x * x, x);
    return x / (B(1.0f) + simd::exp_batch<A>(-u2));
}

template <class A>
inline xsimd::batch<float, A> silu_batch(const xsimd::batch<float, A>& x) {
    using B = xsimd::batch<float, A>;
    return x / (B(1.0f) + simd::exp_batch<A>(-x));
}

}  // namespace detail

// sum a[i]*b[i].
inline float dot(const float* a, const float* b, std::int64_t n) {
    detail::check_len(n, "dot");
    detail::check_ptr(a, n, "dot", "a");
    detail::check_ptr(b, n, "dot", "b");
    using detail::batch;
    constexpr std::int64_t L = detail::k_lanes;
    batch s0(0.0f), s1(0.0f), s2(0.0f), s3(0.0f);
    std::int64_t i = 0;
    for (; i + 4 * L <= n; i += 4 * L) {
        s0 = xsimd::fma(batch::load_unaligned(a + i), batch::load_unaligned(b + i), s0);
        s1 = xsimd::fma(batch::load_unaligned(a + i + L), batch::load_unaligned(b + i + L), s1);
        s2 = xsimd::fma(batch::load_unaligned(a + i + 2 * L), batch::load_unaligned(b + i + 2 * L), s2);
        s3 = xsimd::fma(batch::load_unaligned(a + i + 3 * L), batch::load_unaligned(b + i + 3 * L), s3);
    }
    for (; i + L <= n; i += L) s0 = xsimd::fma(batch::load_unaligned(a + i), batch::load_unaligned(b + i), s0);
    if (i < n) {
        const auto rest = static_cast<std::size_t>(n - i);
        s1 = xsimd::fma(simd::load_partial(a + i, rest, 0.0f), simd::load_partial(b + i, rest, 0.0f), s1);
    }
    return simd::hsum((s0 + s1) + (s2 + s3));
}

// y += a*x (x and y must not overlap unless equal).
inline void axpy(float a, const float* x, float* y, std::int64_t n) {
    detail::check_len(n, "axpy");
    detail::check_ptr(x, n, "axpy", "x");
    detail::check_ptr(y, n, "axpy", "y");
    const detail::batch av(a);
    detail::map2(y, x, y, n, [&](const auto& xv, const auto& yv) { return xsimd::fma(av, xv, yv); });
}

// x *= a.
inline void scale(float* x, float a, std::int64_t n) {
    detail::check_len(n, "scale");
    detail::check_ptr(x, n, "scale", "x");
    const detail::batch av(a);
    detail::map_inplace(x, n, [&](const auto& v) { return v * av; });
}

// out = a + b; out may alias a or b.
inline void add(float* out, const float* a, const float* b, std::int64_t n) {
    detail::check_len(n, "add");
    detail::check_ptr(out, n, "add", "out");
    detail::check_ptr(a, n, "add", "a");
    detail::check_ptr(b, n, "add", "b");
    detail::map2(out, a, b, n, [](const auto& av, const auto& bv) { return av + bv; });
}

// out = x / sqrt(mean(x^2) + eps) * weight (llama's RMSNorm, applied as (x * scale) * weight);
// out may alias x.
inline void rmsnorm(float* out, const float* x, const float* weight, std::int64_t n, float eps) {
    detail::check_len(n, "rmsnorm");
    if (n == 0) throw shape_error("rmsnorm: empty row");
    detail::check_ptr(out, n, "rmsnorm", "out");
    detail::check_ptr(x, n, "rmsnorm", "x");
    detail::check_ptr(weight, n, "rmsnorm", "weight");
    detail::check_eps(eps, "rmsnorm");
    const float sum_sq = detail::map_sum(x, n, [](const auto& v) { return v * v; });
    const detail::batch inv(1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps));
    detail::map2(out, x, weight, n, [&](const auto& xv, const auto& wv) { return (xv * inv) * wv; });
}

// out = (x - mean) / sqrt(var + eps) * weight + bias, var the biased (1/n) variance computed
// from centred values (two passes: no cancellation when |mean| >> std); bias may be null;
// out may alias x.
inline void layernorm(float* out, const float* x, const float* weight, const float* bias, std::int64_t n, float eps) {
    detail::check_len(n, "layernorm");
    if (n == 0) throw shape_error("layernorm: empty row");
    detail::check_ptr(out, n, "layernorm", "out");
    detail::check_ptr(x, n, "layernorm", "x");
    detail::check_ptr(weight, n, "layernorm", "weight");
    detail::check_eps(eps, "layernorm");
    using detail::batch;
    constexpr std::int64_t L = detail::k_lanes;
    const float inv_n = 1.0f / static_cast<float>(n);
    // The first mean m0 carries the rounding of a float sum; the second pass sums the
    // deviations d = x - m0 too, and m0 + mean(d) is the mean to nearly full precision
    // (a constant row gives exactly its value, so x - mean is exactly 0).
    const float m0 = detail::map_sum(x, n, [](const auto& v) { return v; }) * inv_n;
    const batch m0v(m0);
    batch sd(0.0f), sdd(0.0f), sd1(0.0f), sdd1(0.0f);  // two chains each, for FMA latency
    std::int64_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        const batch d0 = batch::load_unaligned(x + i) - m0v, d1 = batch::load_unaligned(x + i + L) - m0v;
        sd += d0;
        sdd = xsimd::fma(d0, d0, sdd);
        sd1 += d1;
        sdd1 = xsimd::fma(d1, d1, sdd1);
    }
    sd += sd1;
    sdd += sdd1;
    for (; i + L <= n; i += L) {
        const batch d = batch::load_unaligned(x + i) - m0v;
        sd += d;
        sdd = xsimd::fma(d, d, sdd);
    }
    if (i < n) {  // padded with m0: zero deviation
        const batch d = simd::load_partial(x + i, static_cast<std::size_t>(n - i), m0) - m0v;
        sd += d;
        sdd = xsimd::fma(d, d, sdd);
    }
    const float c = simd::hsum(sd) * inv_n;
    const float var = std::max(0.0f, simd::hsum(sdd) * inv_n - c * c);
    const batch mv(m0 + c);
    const batch inv(1.0f / std::sqrt(var + eps));
    if (bias == nullptr) {
        detail::map2(out, x, weight, n, [&](const auto& xv, const auto& wv) { return ((xv - mv) * inv) * wv; });
        return;
    }
    for (i = 0; i + L <= n; i += L)
        xsimd::fma((batch::load_unaligned(x + i) - mv) * inv, batch::load_unaligned(weight + i), batch::load_unaligned(bias + i))
            .store_unaligned(out + i);
    if (i < n) {
        const auto rest = static_cast<std::size_t>(n - i);
        simd::store_partial(xsimd::fma((simd::load_partial(x + i, rest, 0.0f) - mv) * inv, simd::load_partial(weight + i, rest, 0.0f),
                                       simd::load_partial(bias + i, rest, 0.0f)),
                            out + i, rest);
    }
}

// In place x = exp(x - max) / sum exp(x - max). All -inf gives the uniform distribution,
// +inf entries share all the mass, a NaN makes every output NaN.
inline void softmax(float* x, std::int64_t n) {
    detail::check_len(n, "softmax");
    detail::check_ptr(x, n, "softmax", "x");
    if (n == 0) return;
    const float m = detail::max_ignore_nan(x, n);
    if (std::isinf(m)) {
        detail::softmax_infinite_max(x, n, m > 0);
        return;
    }
    using detail::batch;
    constexpr std::int64_t L = detail::k_lanes;
    const batch mv(m);
    batch s0(0.0f), s1(0.0f);
    std::int64_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        const batch e0 = simd::exp_batch(batch::load_unaligned(x + i) - mv);
        const batch e1 = simd::exp_batch(batch::load_unaligned(x + i + L) - mv);
        e0.store_unaligned(x + i);
        e1.store_unaligned(x + i + L);
        s0 += e0;
        s1 += e1;
    }
    for (; i + L <= n; i += L) {
        const batch e = simd::exp_batch(batch::load_unaligned(x + i) - mv);
        e.store_unaligned(x + i);
        s0 += e;
    }
    if (i < n) {
        const auto rest = static_cast<std::size_t>(n - i);
        // Padding with -inf makes the padded lanes exp(-inf) = 0, out of the sum.
        const batch e = simd::exp_batch(simd::load_partial(x + i, rest, -std::numeric_limits<float>::infinity()) - mv);
        simd::store_partial(e, x + i, rest);
        s1 += e;
    }
    const float inv = 1.0f / simd::hsum(s0 + s1);
    scale(x, inv, n);
}

// GPT-2's GELU, tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in place.
inline void gelu(float* x, std::int64_t n) {
    detail::check_len(n, "gelu");
    detail::check_ptr(x, n, "gelu", "x");
    detail::map_inplace(x, n, [](const auto& v) { return detail::gelu_batch(v); });
}

// x * sigmoid(x), in place.
inline void silu(float* x, std::int64_t n) {
    detail::check_len(n, "silu");
    detail::check_ptr(x, n, "silu", "x");
    detail::map_inplace(x, n, [](const auto& v) { return detail::silu_batch(v); });
}

// out = silu(gate) * up; out may alias gate or up.
inline void swiglu(float* out, const float* gate, const float* up, std::int64_t n) {
    detail::check_len(n, "swiglu");
    detail::check_ptr(out, n, "swiglu", "out");
    detail::check_ptr(gate, n, "swiglu", "gate");
    detail::check_ptr(up, n, "swiglu", "up");
    detail::map2(out, gate, up, n, [](const auto& g, const auto& u) { return detail::silu_batch(g) * u; });
}

// out = a * b element by element; out may alias a or b (the gated products of GEGLU).
inline void mul(float* out, const float* a, const float* b, std::int64_t n) {
    detail::check_len(n, "mul");
    detail::check_ptr(out, n, "mul", "out");
    detail::check_ptr(a, n, "mul", "a");
    detail::check_ptr(b, n, "mul", "b");
    detail::map2(out, a, b, n, [](const auto& x, const auto& y) { return x * y; });
}

// In place x = cap * tanh(x / cap) (Gemma 2's logit soft-capping), computed as llama.cpp does:
// x * (1/cap), tanh, * cap. cap must be > 0.
inline void softcap(float* x, float cap, std::int64_t n) {
    detail::check_len(n, "softcap");
    detail::check_ptr(x, n, "softcap", "x");
    if (!(cap > 0.0f) || !std::isfinite(cap)) throw error("softcap: cap must be finite and > 0");
    const float inv = 1.0f / cap;
    for (std::int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i] * inv) * cap;
}

// Index of the first maximum; NaN never wins (an all-NaN row gives 0); n must be > 0.
inline std::int64_t argmax(const float* x, std::int64_t n) {
    detail::check_len(n, "argmax");
    if (n == 0) throw shape_error("argmax: empty row");
    detail::check_ptr(x, n, "argmax", "x");
    const float m = detail::max_ignore_nan(x, n);
    for (std::int64_t i = 0; i < n; ++i)
        if (x[i] == m) return i;
    return 0;
}

// Scalar references: the same contracts (and checks), computed in double, rounded once.
namespace ref {

inline double dot(const float* a, const float* b, std::int64_t n) {
    detail::check_len(n, "ref::dot");
    detail::check_ptr(a, n, "ref::dot", "a");
    detail::check_ptr(b, n, "ref::dot", "b");
    double s = 0.0;
    for (std::int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
}

inline void axpy(float a, const float* x, float* y, std::int64_t n) {
    detail::check_len(n, "ref::axpy");
    detail::check_ptr(x, n, "ref::axpy", "x");
    detail::check_ptr(y, n, "ref::axpy", "y");
    for (std::int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<double>(y[i]) + static_cast<double>(a) * x[i]);
}

inline void scale(float* x, float a, std::int64_t n) {
    detail::check_len(n, "ref::scale");
    detail::check_ptr(x, n, "ref::scale", "x");
    for (std::int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<double>(x[i]) * a);
}

inline void add(float* out, const float* a, const float* b, std::int64_t n) {
    detail::check_len(n, "ref::add");
    detail::check_ptr(out, n, "ref::add", "out");
    detail::check_ptr(a, n, "ref::add", "a");
    detail::check_ptr(b, n, "ref::add", "b");
    for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<double>(a[i]) + b[i]);
}

inline void rmsnorm(float* out, const float* x, const float* weight, std::int64_t n, float eps) {
    detail::check_len(n, "ref::rmsnorm");
    if (n == 0) throw shape_error("ref::rmsnorm: empty row");
    detail::check_ptr(out, n, "ref::rmsnorm", "out");
    detail::check_ptr(x, n, "ref::rmsnorm", "x");
    detail::check_ptr(weight, n, "ref::rmsnorm", "weight");
    detail::check_eps(eps, "ref::rmsnorm");
    double ss = 0.0;
    for (std::int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
    for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i] * inv * weight[i]);
}

inline void layernorm(float* out, const float* x, const float* weight, const float* bias, std::int64_t n, float eps) {
    detail::check_len(n, "ref::layernorm");
    if (n == 0) throw shape_error("ref::layernorm: empty row");
    detail::check_ptr(out, n, "ref::layernorm", "out");
    detail::check_ptr(x, n, "ref::layernorm", "x");
    detail::check_ptr(weight, n, "ref::layernorm", "weight");
    detail::check_eps(eps, "ref::layernorm");
    double mean = 0.0;
    for (std::int64_t i = 0; i < n; ++i) mean += x[i];
    mean /= static_cast<double>(n);
    double var = 0.0;
    for (std::int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
    var /= static_cast<double>(n);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (std::int64_t i = 0; i < n; ++i)
        out[i] = static_cast<float>((x[i] - mean) * inv * weight[i] + (bias ? static_cast<double>(bias[i]) : 0.0));
}

inline void softmax(float* x, std::int64_t n) {
    detail::check_len(n, "ref::softmax");
    detail::check_ptr(x, n, "ref::softmax", "x");
    if (n == 0) return;
    double m = -std::numeric_limits<double>::infinity();
    for (std::int64_t i = 0; i < n; ++i)
        if (x[i] > m) m = x[i];
    if (std::isinf(m)) {
        detail::softmax_infinite_max(x, n, m > 0);
        return;
    }
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - m);
    for (std::int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(std::exp(x[i] - m) / sum);
}

inline void gelu(float* x, std::int64_t n) {
    detail::check_len(n, "ref::gelu");
    detail::check_ptr(x, n, "ref::gelu", "x");
    const double c = std::sqrt(2.0 / 3.14159265358979323846);
    for (std::int64_t i = 0; i < n; ++i) {
        const double v = x[i];
        x[i] = static_cast<float>(0.5 * v * (1.0 + std::tanh(c * (v + 0.044715 * v * v * v))));
    }
}

inline void silu(float* x, std::int64_t n) {
    detail::check_len(n, "ref::silu");
    detail::check_ptr(x, n, "ref::silu", "x");
    for (std::int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(x[i] / (1.0 + std::exp(-static_cast<double>(x[i]))));
}

inline void swiglu(float* out, const float* gate, const float* up, std::int64_t n) {
    detail::check_len(n, "ref::swiglu");
    detail::check_ptr(out, n, "ref::swiglu", "out");
    detail::check_ptr(gate, n, "ref::swiglu", "gate");
    detail::check_ptr(up, n, "ref::swiglu", "up");
    for (std::int64_t i = 0; i < n; ++i) {
        const double g = gate[i];
        out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
    }
}

inline std::int64_t argmax(const float* x, std::int64_t n) {
    detail::check_len(n, "ref::argmax");
    if (n == 0) throw shape_error("ref::argmax: empty row");
    detail::check_ptr(x, n, "ref::argmax", "x");
    std::int64_t best = -1;
    for (std::int64_t i = 0; i < n; ++i)
        if (!std::isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    return best < 0 ? 0 : best;
}

}  // namespace ref
}  // namespace minigpt::kernels

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
