// The float row-dot kernel, included twice by float_kernels.hpp (no include guard, on purpose): once
// per set of vector operations `dot_ops` (simd/float_ops.hpp), with MINIGPT_FLOAT_KERNEL_TARGET the
// target attribute that set needs. Not a header of its own: include float_kernels.hpp.

template <float_kind K>
MINIGPT_FLOAT_KERNEL_TARGET __attribute__((always_inline)) inline dot_ops::reg load_weights(const std::byte* row, std::int64_t i) {
    if constexpr (K == float_kind::f32) return dot_ops::load(reinterpret_cast<const float*>(row) + i);
    else if constexpr (K == float_kind::f16) return dot_ops::load_f16(reinterpret_cast<const std::uint16_t*>(row) + i);
    else return dot_ops::load_bf16(reinterpret_cast<const std::uint16_t*>(row) + i);
}

// out[r] = dot(row r, x) for R rows starting at w, `stride` bytes apart; any n. When H > 0, x's
// vectors [0, H) are already in registers xh (H a multiple of the chain count, H * lanes <= n) and
// are used instead of loading them: the same operations in the same order, so the same sums.
template <float_kind K, int R, int H>
MINIGPT_FLOAT_KERNEL_TARGET __attribute__((always_inline)) inline void dot_float_rows_body(const std::byte* w, std::int64_t stride,
                                                                                           const float* x, std::int64_t n, float* out,
                                                                                           const dot_ops::reg* xh) {
    using ops = dot_ops;
    using B = ops::reg;
    constexpr std::int64_t L = ops::lanes;
    // U accumulators per row, so that one row (decode) has U FMA chains in flight: with 2, one core
    // streamed f16 rows from memory ~8% slower than with 4. U is the same for every R, so a row's sum
    // does not depend on how rows were grouped (results are the same for any thread count); with
    // 16 vector registers (AVX2) 4 rows x 4 accumulators would spill, so there it stays 2.
    constexpr int U = ops::dot_chains;
    static_assert(H % U == 0);
    B acc[U][R];
    for (int u = 0; u < U; ++u)
        for (int r = 0; r < R; ++r) acc[u][r] = ops::zero();
#pragma GCC unroll 64
    for (int h = 0; h < H; h += U)
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int u = 0; u < U; ++u) acc[u][r] = ops::fma(load_weights<K>(w + r * stride, (h + u) * L), xh[h + u], acc[u][r]);
    std::int64_t i = H * L;
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

template <float_kind K, int R>
MINIGPT_FLOAT_KERNEL_TARGET inline void dot_float_rows(const std::byte* w, std::int64_t stride, const float* x, std::int64_t n,
                                                       float* out) {
    dot_float_rows_body<K, R, 0>(w, stride, x, n, out, nullptr);
}

// out[r] = dot(row r, x) for n_rows rows from w, `stride` bytes apart: the one-token case (decode).
// The first dot_ops::held_x vectors of x stay in registers across the rows, so that only the rest
// are reloaded per row: the activation loads compete with the weight misses for the core's load
// slots, and holding 24 of GPT-2's 96 vectors made 2-thread GEMV stream ~6% faster (1.04x the read
// loop's bandwidth against 0.98x, fast minutes). Same sums as dot_float_rows<K, 1>.
template <float_kind K>
MINIGPT_FLOAT_KERNEL_TARGET inline void dot_float_row_range(const std::byte* w, std::int64_t stride, const float* x, std::int64_t n,
                                                            float* out, std::int64_t n_rows) {
    constexpr int H = dot_ops::held_x;
    if constexpr (H > 0) {
        if (n >= H * dot_ops::lanes) {
            dot_ops::reg xh[H];
            for (int h = 0; h < H; ++h) xh[h] = dot_ops::load(x + h * dot_ops::lanes);
            for (std::int64_t r = 0; r < n_rows; ++r) dot_float_rows_body<K, 1, H>(w + r * stride, stride, x, n, out + r, xh);
            return;
        }
    }
    for (std::int64_t r = 0; r < n_rows; ++r) dot_float_rows<K, 1>(w + r * stride, stride, x, n, out + r);
}

// out[t * out_stride] = dot(row, x + t * x_stride) for T tokens: one weight row read once, each of
// its vectors multiplied into every token's chains while in a register. A few-token batch (the
// verification of speculative decoding) thereby streams W once, as one token does, instead of
// re-reading groups of rows per token (4 streams side by side, which the prefetchers follow at about
// half the bandwidth of one). Each token's chains see the same operations in the same order as
// dot_float_rows<K, 1>, so the same sums: a token's logits do not depend on the batch it was in.
template <float_kind K, int T>
MINIGPT_FLOAT_KERNEL_TARGET inline void dot_float_tokens(const std::byte* w, const float* x, std::int64_t x_stride, std::int64_t n,
                                                         float* out, std::int64_t out_stride) {
    using ops = dot_ops;
    using B = ops::reg;
    constexpr std::int64_t L = ops::lanes;
    constexpr int U = ops::dot_chains;
    B acc[T][U];
    for (int t = 0; t < T; ++t)
        for (int u = 0; u < U; ++u) acc[t][u] = ops::zero();
    std::int64_t i = 0;
    for (; i + U * L <= n; i += U * L) {
        B ws[U];
        for (int u = 0; u < U; ++u) ws[u] = load_weights<K>(w, i + u * L);
        for (int t = 0; t < T; ++t)
            for (int u = 0; u < U; ++u) acc[t][u] = ops::fma(ws[u], ops::load(x + t * x_stride + i + u * L), acc[t][u]);
    }
    for (; i + L <= n; i += L) {
        const B w0 = load_weights<K>(w, i);
        for (int t = 0; t < T; ++t) acc[t][0] = ops::fma(w0, ops::load(x + t * x_stride + i), acc[t][0]);
    }
    for (int t = 0; t < T; ++t) {
        B sum = acc[t][0];
        for (int u = 1; u < U; ++u) sum = ops::add(sum, acc[t][u]);
        float s = ops::reduce(sum);
        for (std::int64_t j = i; j < n; ++j) s = std::fma(weight_at<K>(w, j), x[t * x_stride + j], s);
        out[t * out_stride] = s;
    }
}
