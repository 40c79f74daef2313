// The float row-dot kernel, included twice by float_kernels.hpp (no include guard, on purpose): once
// per set of vector operations `dot_ops` (simd/float_ops.hpp), with MINIGPT_FLOAT_KERNEL_TARGET the
// target attribute that set needs. Not a header of its own: include float_kernels.hpp.

template <float_kind K>
MINIGPT_FLOAT_KERNEL_TARGET __attribute__((always_inline)) inline dot_ops::reg load_weights(const std::byte* row, std::int64_t i) {
    if constexpr (K == float_kind::f32) return dot_ops::load(reinterpret_cast<const float*>(row) + i);
    else if constexpr (K == float_kind::f16) return dot_ops::load_f16(reinterpret_cast<const std::uint16_t*>(row) + i);
    else return dot_ops::load_bf16(reinterpret_cast<const std::uint16_t*>(row) + i);
}

// out[r] = dot(row r, x) for R rows starting at w, `stride` bytes apart; any n.
template <float_kind K, int R>
MINIGPT_FLOAT_KERNEL_TARGET inline void dot_float_rows(const std::byte* w, std::int64_t stride, const float* x, std::int64_t n,
                                                       float* out) {
    using ops = dot_ops;
    using B = ops::reg;
    constexpr std::int64_t L = ops::lanes;
    // U accumulators per row, so that one row (decode) has U FMA chains in flight: with 2, one core
    // streamed f16 rows from memory ~8% slower than with 4. U is the same for every R, so a row's sum
    // does not depend on how rows were grouped (results are the same for any thread count); with
    // 16 vector registers (AVX2) 4 rows x 4 accumulators would spill, so there it stays 2.
    constexpr int U = ops::dot_chains;
    B acc[U][R];
    for (int u = 0; u < U; ++u)
        for (int r = 0; r < R; ++r) acc[u][r] = ops::zero();
    std::int64_t i = 0;
    for (; i + U * L <= n; i += U * L) {
        B xs[U];
        for (int u = 0; u < U; ++u) {
            xs[u] = ops::load(x + i + u * L);
            ops::keep(xs[u]);
        }
        for (int r = 0; r < R; ++r)
            for (int u = 0; u < U; ++u) acc[u][r] = ops::fma(load_weights<K>(w + r * stride, i + u * L), xs[u], acc[u][r]);
    }
    for (; i + L <= n; i += L) {
        const B x0 = ops::load(x + i);
        for (int r = 0; r < R; ++r) acc[0][r] = ops::fma(load_weights<K>(w + r * stride, i), x0, acc[0][r]);
    }
    for (int r = 0; r < R; ++r) {
        B sum = acc[0][r];
        for (int u = 1; u < U; ++u) sum = ops::add(sum, acc[u][r]);
        float s = ops::reduce(sum);
        // std::fma, not a * b + s: the compiler may contract the latter differently per R.
        for (std::int64_t j = i; j < n; ++j) s = std::fma(weight_at<K>(w + r * stride, j), x[j], s);
        out[r] = s;
    }
}

