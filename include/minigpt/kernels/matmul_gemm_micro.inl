// The GEMM micro-kernel, included twice by float_kernels.hpp (no include guard, on purpose): once per
// set of vector operations `ops` (simd/float_ops.hpp), with MINIGPT_FLOAT_KERNEL_TARGET the target
// attribute that set needs. Not a header of its own: include float_kernels.hpp.

// c[t*ldc + r] += sum_{i<k} x[t*ldx + i] * w[r*ldw + i] for t < MT, r < NR.
template <int MT, int NR>
MINIGPT_FLOAT_KERNEL_TARGET inline void gemm_micro(const float* x, std::int64_t ldx, const float* w, std::int64_t ldw, std::int64_t k, float* c,
                       std::int64_t ldc) {
    using B = ops::reg;
    constexpr std::int64_t L = ops::lanes;
    B acc[MT * NR];
    for (auto& a : acc) a = ops::zero();
    std::int64_t i = 0;
    for (; i + L <= k; i += L) {
        B wv[NR];
        for (int r = 0; r < NR; ++r) {
            wv[r] = ops::load(w + r * ldw + i);
            ops::keep(wv[r]);
        }
        for (int t = 0; t < MT; ++t) {
            B xv = ops::load(x + t * ldx + i);
            ops::keep(xv);
            for (int r = 0; r < NR; ++r) acc[t * NR + r] = ops::fma(xv, wv[r], acc[t * NR + r]);
        }
    }
    float sums[MT * NR];
    ops::reduce_each(acc, MT * NR, sums);
    for (; i < k; ++i)
        for (int t = 0; t < MT; ++t)
            for (int r = 0; r < NR; ++r) sums[t * NR + r] += x[t * ldx + i] * w[r * ldw + i];
    for (int t = 0; t < MT; ++t)
        for (int r = 0; r < NR; ++r) c[t * ldc + r] += sums[t * NR + r];
}

template <int NR>
MINIGPT_FLOAT_KERNEL_TARGET inline void gemm_micro_tokens(int mt, const float* x, std::int64_t ldx, const float* w, std::int64_t ldw, std::int64_t k,
                              float* c, std::int64_t ldc) {
    switch (mt) {
        case 4: gemm_micro<4, NR>(x, ldx, w, ldw, k, c, ldc); return;
        case 3: gemm_micro<3, NR>(x, ldx, w, ldw, k, c, ldc); return;
        case 2: gemm_micro<2, NR>(x, ldx, w, ldw, k, c, ldc); return;
        default: gemm_micro<1, NR>(x, ldx, w, ldw, k, c, ldc); return;
    }
}

MINIGPT_FLOAT_KERNEL_TARGET inline void gemm_micro_any(int mt, int nr, const float* x, std::int64_t ldx, const float* w, std::int64_t ldw,
                           std::int64_t k, float* c, std::int64_t ldc) {
    switch (nr) {
        case 4: gemm_micro_tokens<4>(mt, x, ldx, w, ldw, k, c, ldc); return;
        case 3: gemm_micro_tokens<3>(mt, x, ldx, w, ldw, k, c, ldc); return;
        case 2: gemm_micro_tokens<2>(mt, x, ldx, w, ldw, k, c, ldc); return;
        default: gemm_micro_tokens<1>(mt, x, ldx, w, ldw, k, c, ldc); return;
    }
}

