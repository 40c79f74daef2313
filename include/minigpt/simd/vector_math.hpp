// Float math on xsimd batches for the element-wise kernels: exp, expm1, tanh, sigmoid,
// horizontal reductions, and partial loads/stores for row tails.
//
// The transcendental functions are written here rather than taken from xsimd so their
// accuracy and edge cases are ours to state and test: exp and expm1 are within ~2 ulp of
// the correctly rounded result over the whole float range (subnormal results included,
// +-inf and NaN handled), tanh within ~4 ulp. The forward pass must reproduce reference
// logits within 1e-3, so these are accurate implementations, not the cheap bit-trick
// approximations sometimes used for activations.
//
// Method (standard Cody-Waite reduction): x = n*ln2 + r with |r| <= ln2/2, the split
// constant ln2_hi having enough trailing zero bits that n*ln2_hi is exact; e^r from a
// degree-7 Taylor polynomial (truncation error < 0.05 ulp on that interval); the result
// scaled by 2^n built from exponent bits, in two steps so that results in the subnormal
// range and up to the overflow threshold come out right. Row tails shorter than a batch
// are padded through a small aligned buffer so every element goes through the same code.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include <xsimd/xsimd.hpp>

#include "minigpt/simd/convert.hpp"

// GCC 12 reports a false -Wuninitialized / -Wmaybe-uninitialized inside the AVX-512
// intrinsics xsimd uses (their _mm512_undefined_* pass-through operand, GCC bug 105593)
// wherever they are inlined; the warning is attributed to the inlining function, so it is
// silenced for the functions defined in this header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace minigpt::simd {

namespace detail {
inline constexpr float k_log2e = 1.44269504088896341f;
inline constexpr float k_ln2_hi = 0.693145751953125f;          // 0x3f317200: 15 significant bits
inline constexpr float k_ln2_lo = 1.428606765330187045e-06f;   // ln2 - ln2_hi

// n*ln2 reduction shared by exp and expm1: returns n (as a float) and r = x - n*ln2.
template <class A>
inline xsimd::batch<float, A> reduce_ln2(const xsimd::batch<float, A>& x, xsimd::batch<float, A>& r) {
    using B = xsimd::batch<float, A>;
    const B n = xsimd::nearbyint(x * B(k_log2e));
    r = xsimd::fnma(n, B(k_ln2_hi), x);
    r = xsimd::fnma(n, B(k_ln2_lo), r);
    return n;
}

// 2^n for integer-valued n in [-126, 127], from the exponent field.
template <class A>
inline xsimd::batch<float, A> pow2i(const xsimd::batch<std::int32_t, A>& n) {
    return xsimd::bitwise_cast<xsimd::batch<float, A>>((n + 127) << 23);
}

// (e^r - 1 - r) / r^2 for |r| <= ln2/2: Taylor terms 1/2! .. 1/8!.
template <class A>
inline xsimd::batch<float, A> expm1_tail(const xsimd::batch<float, A>& r) {
    using B = xsimd::batch<float, A>;
    B p(1.0f / 40320.0f);
    p = xsimd::fma(p, r, B(1.0f / 5040.0f));
    p = xsimd::fma(p, r, B(1.0f / 720.0f));
    p = xsimd::fma(p, r, B(1.0f / 120.0f));
    p = xsimd::fma(p, r, B(1.0f / 24.0f));
    p = xsimd::fma(p, r, B(1.0f / 6.0f));
    p = xsimd::fma(p, r, B(0.5f));
    return p;
}
}  // namespace detail

// e^x. Underflows to 0 below about -103.97, overflows to +inf above about 88.72; NaN stays NaN.
template <class A = arch>
inline xsimd::batch<float, A> exp_batch(const xsimd::batch<float, A>& x_in) {
    using B = xsimd::batch<float, A>;
    using I = xsimd::batch<std::int32_t, A>;
    // Clamping keeps n within [-152, 129] so both half-exponents below are representable;
    // the clamp bounds are already 0 and +inf after rounding.
    const B x = xsimd::min(xsimd::max(x_in, B(-105.0f)), B(89.0f));
    B r;
    const B n = detail::reduce_ln2(x, r);
    // e^r = 1 + r + r^2 * tail(r), summed small-to-large.
    const B p = B(1.0f) + xsimd::fma(r * r, detail::expm1_tail(r), r);
    const I ni = xsimd::to_int(n);
    const I n1 = ni >> 1;     // floor(n/2); n - n1 >= n1, both within [-76, 65]
    const I n2 = ni - n1;
    // p * 2^n1 is exact (a normal number); the single rounding happens in the last product.
    const B y = (p * detail::pow2i<A>(n1)) * detail::pow2i<A>(n2);
    // (xsimd 8's float != is the ordered compare, false for NaN: use isnan.)
    return xsimd::select(xsimd::isnan(x_in), x_in, y);
}

// e^x - 1, accurate near 0 (relative error a few ulp for tiny x too); -1 below -20 (exact
// in float), +inf above about 88.72, NaN stays NaN.
template <class A = arch>
inline xsimd::batch<float, A> expm1_batch(const xsimd::batch<float, A>& x_in) {
    using B = xsimd::batch<float, A>;
    constexpr float k_overflow = 88.7228394f;   // largest x with e^x < FLT_MAX
    const B x = xsimd::min(xsimd::max(x_in, B(-20.0f)), B(k_overflow));
    B r;
    B n = detail::reduce_ln2(x, r);                            // n in [-29, 128]
    B q = xsimd::fma(r * r, detail::expm1_tail(r), r);         // e^r - 1
    // 2^128 is not a float: write 2^128 (q + 1) - 1 as 2^127 (2q + 1) + (2^127 - 1).
    const auto top = n > B(127.5f);
    q = xsimd::select(top, xsimd::fma(B(2.0f), q, B(1.0f)), q);
    n = xsimd::select(top, B(127.0f), n);
    const B s = detail::pow2i<A>(xsimd::to_int(n));
    // e^x - 1 = 2^n (e^r - 1) + (2^n - 1); for n == 0 this is q itself, so no cancellation.
    B y = xsimd::fma(s, q, s - B(1.0f));
    y = xsimd::select(x_in > B(k_overflow), B(std::numeric_limits<float>::infinity()), y);
    return xsimd::select(xsimd::isnan(x_in), x_in, y);
}

// tanh(x) = -expm1(-2|x|) / (expm1(-2|x|) + 2), with the sign of x. Computing through
// expm1 of a non-positive argument keeps full relative accuracy near 0 and never overflows.
template <class A = arch>
inline xsimd::batch<float, A> tanh_batch(const xsimd::batch<float, A>& x) {
    using B = xsimd::batch<float, A>;
    const B em = expm1_batch<A>(B(-2.0f) * xsimd::abs(x));
    const B t = -em / (em + B(2.0f));
    return xsimd::copysign(t, x);
}

// 1 / (1 + e^-x); exactly 0 where e^-x overflows (x < about -88.7) and 1 for large x.
template <class A = arch>
inline xsimd::batch<float, A> sigmoid_batch(const xsimd::batch<float, A>& x) {
    using B = xsimd::batch<float, A>;
    return B(1.0f) / (B(1.0f) + exp_batch<A>(-x));
}

// Horizontal sum and maximum of one batch.
template <class A = arch>
inline float hsum(const xsimd::batch<float, A>& v) { return xsimd::hadd(v); }

template <class A = arch>
inline float hmax(const xsimd::batch<float, A>& v) {
    alignas(64) float lanes[xsimd::batch<float, A>::size];
    v.store_aligned(lanes);
    float m = lanes[0];
    for (std::size_t i = 1; i < xsimd::batch<float, A>::size; ++i) m = std::max(m, lanes[i]);
    return m;
}

namespace detail {
template <unsigned H>
struct xor_lane {
    static constexpr unsigned get(unsigned i, unsigned) { return i ^ H; }
};
template <unsigned H>
struct lane_bit_clear {
    static constexpr bool get(unsigned i, unsigned) { return (i & H) == 0; }
};
// Folds rows[j] with rows[j+H] (j < H): lanes whose bit H is clear keep summing row j's
// halves, the others row j+H's, so after the H = 1 step lane i holds the sum of rows[i].
template <class A, unsigned H>
inline void fold_rows(xsimd::batch<float, A>* rows) {
    using B = xsimd::batch<float, A>;
    constexpr auto keep = xsimd::make_batch_bool_constant<B, lane_bit_clear<H>>();
    constexpr auto swap = xsimd::make_batch_constant<xsimd::batch<std::uint32_t, A>, xor_lane<H>>();
    for (unsigned j = 0; j < H; ++j) {
        const B a = rows[j], b = rows[j + H];
        rows[j] = xsimd::select(keep, a, b) + xsimd::swizzle(xsimd::select(keep, b, a), swap);
    }
    if constexpr (H > 1) fold_rows<A, H / 2>(rows);
}
}  // namespace detail

// A batch whose lane i is the horizontal sum of rows[i] (a transpose-and-add over a full
// batch of rows, which are overwritten). Written here because xsimd 8.1's AVX-512 haddp
// returns the lane sums in the wrong order.
template <class A = arch>
inline xsimd::batch<float, A> hsum_rows(xsimd::batch<float, A>* rows) {
    constexpr unsigned lanes = static_cast<unsigned>(xsimd::batch<float, A>::size);
    if constexpr (lanes > 1) detail::fold_rows<A, lanes / 2>(rows);
    return rows[0];
}

// Elementwise max that never picks a NaN from `x` (a NaN in `x` leaves `m` unchanged).
template <class A = arch>
inline xsimd::batch<float, A> max_ignore_nan(const xsimd::batch<float, A>& m, const xsimd::batch<float, A>& x) {
    return xsimd::select(x > m, x, m);
}

// The first n (< batch size) floats at p in a batch, the other lanes set to `fill`.
template <class A = arch>
inline xsimd::batch<float, A> load_partial(const float* p, std::size_t n, float fill) {
    alignas(64) float tmp[xsimd::batch<float, A>::size];
    for (std::size_t i = 0; i < xsimd::batch<float, A>::size; ++i) tmp[i] = i < n ? p[i] : fill;
    return xsimd::batch<float, A>::load_aligned(tmp);
}

// Store the first n (< batch size) lanes of v at p.
template <class A = arch>
inline void store_partial(const xsimd::batch<float, A>& v, float* p, std::size_t n) {
    alignas(64) float tmp[xsimd::batch<float, A>::size];
    v.store_aligned(tmp);
    std::copy(tmp, tmp + n, p);
}

// Scalar versions through the batch code (lane 0), so a scalar caller gets the same bits.
inline float exp_scalar(float x) { return exp_batch<>(f32_batch(x)).get(0); }
inline float tanh_scalar(float x) { return tanh_batch<>(f32_batch(x)).get(0); }

}  // namespace minigpt::simd

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
