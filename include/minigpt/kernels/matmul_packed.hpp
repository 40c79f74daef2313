// Integer matmul kernels on the packed (16-row interleaved) Q4_0 / Q8_0 layout of
// quant/repack.hpp, and kernels::packed_matrix, the weight handle that selects them.
//
// One kernel serves generation and prefill: a tile of 16 weight rows by MT tokens keeps one
// f32 accumulator vector (16 rows) per token. Per 32-element block it widens the 16 block
// scales once, seeds one int32 vector per token with the zero-point correction, runs
// vpdpbusd over 64-byte chunks of the block against 4 activation bytes broadcast from
// memory (exact int32 sums), then applies scale_w * scale_x with one FMA per token. The
// nibble unpacking of Q4_0 is shared by the MT tokens. With one token (decode) this reads
// each weight byte once with ~4x fewer instructions than the per-row kernels of
// matmul_dot.hpp; with many tokens (prefill) a group's weights stay in L1 while k_pack_token_block
// tokens pass, so the multiply rate is that of vpdpbusd: about 4x the f32 GEMM's FMA rate.
//
// Activations are quantised to 8-bit blocks (act_q8_32_seeded) exactly as for the per-row
// kernels, so the results are the same sums; packed_dot_scalar is the portable twin that
// computes them without SIMD (and the fallback on a CPU without AVX2, where packed_matrix does
// not pack by default: the per-row kernels are faster there).
//
// The vector kernel is chosen at run time: it is compiled for AVX-512 VNNI through target
// attributes (simd/avx512_vnni.hpp) whatever the flags of the program, and used when the CPU
// has it, so a build for baseline x86-64 gets the same decode and prefill speed on quantised
// models as a -march=native one. CPUs with AVX2 but not VNNI run packed_avx2.hpp's kernel on
// the same layout, with the same sums.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/half.hpp"
#include "minigpt/core/memory.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/kernels/matmul_dot.hpp"
#include "minigpt/kernels/packed_avx2.hpp"
#include "minigpt/quant/blocks.hpp"
#include "minigpt/quant/repack.hpp"
#include "minigpt/simd/avx512_vnni.hpp"

namespace minigpt::kernels {

namespace detail {

using quant::act_q8_32_seeded;
using quant::k_pack_rows;
using quant::packed_layout;

// True when the packed kernels run on AVX-512 VNNI (checked at run time).
inline bool packed_kernels_vnni() {
#if defined(MINIGPT_AVX512_VNNI_DISPATCH)
    return simd::vnni512::supported();
#else
    return false;
#endif
}

// True when the packed kernels run vectorised on this CPU: AVX-512 VNNI, else AVX2 (packed_avx2.hpp).
inline bool packed_kernels_vectorised() {
#if defined(MINIGPT_SIMD_INT8_AVX2)
    if (simd::int8_avx2_supported()) return true;
#endif
    return packed_kernels_vnni();
}

inline constexpr int k_pack_mt = 8;                     // tokens per register tile
inline constexpr std::int64_t k_pack_token_block = 64;  // tokens per cache block: 64 x n_in bytes stay in L2

// The zero point the packed layout stores the weights at: Q4_0 nibbles are q + 8, packed Q8_0
// bytes are q + 128.
inline std::int32_t packed_zero_point(dtype t) { return t == dtype::q4_0 ? 8 : 128; }

// quant::ref::quantize_act_32 (same bytes, see quantize_act_32 in matmul_dot.hpp) with the seed
// -zero_point * sum(qs) in place of the sum.
inline void quantize_act_seeded(const float* x, act_q8_32_seeded* a, std::int64_t n, std::int32_t zero_point) {
    for (std::int64_t i = 0; i < n / quant::k_qk; ++i) {
        const float* xb = x + i * quant::k_qk;
        const float amax = abs_max(xb, quant::k_qk);
        a[i].d = amax / 127.0f;
        a[i].seed = -zero_point * round_block(xb, amax != 0.0f ? 127.0f / amax : 0.0f, a[i].qs, quant::k_qk);
    }
}

// Scalar twin of packed_tile for one token: out[r] = row 16g + r of W times the activation, r < 16.
// The block sums are exact int32, scaled and accumulated in f32 in block order as the vector kernel does.
inline void packed_dot_scalar(const packed_layout& L, const std::byte* data, std::int64_t g, const act_q8_32_seeded* a,
                              float* out) {
    for (int r = 0; r < k_pack_rows; ++r) {
        float acc = 0.0f;
        for (std::int64_t b = 0; b < L.n_blocks; ++b) {
            const auto* q = reinterpret_cast<const std::uint8_t*>(data + L.quants_of(g, b)) + 4 * r;
            std::uint16_t d;
            std::memcpy(&d, data + L.scales_of(g, b) + 2 * r, 2);
            std::int32_t isum = a[b].seed;
            if (L.type == dtype::q4_0) {
                for (int c = 0; c < 4; ++c)
                    for (int k = 0; k < 4; ++k) {
                        isum += (q[64 * c + k] & 0x0f) * a[b].qs[4 * c + k];
                        isum += (q[64 * c + k] >> 4) * a[b].qs[16 + 4 * c + k];
                    }
            } else {
                for (int c = 0; c < 8; ++c)
                    for (int k = 0; k < 4; ++k) isum += q[64 * c + k] * a[b].qs[4 * c + k];
            }
            acc += static_cast<float>(isum) * (fp16_to_fp32(d) * a[b].d);
        }
        out[r] = acc;
    }
}

#if defined(MINIGPT_AVX512_VNNI_DISPATCH)
// y[t * ldy + r] = row 16g + r of W times token t's activations (a + t * a_stride), for t < MT and
// the first n_rows rows of the group. Runs only where simd::vnni512::supported().
template <dtype T, int MT>
MINIGPT_TARGET_AVX512_VNNI inline void packed_tile(const packed_layout& L, const std::byte* data, std::int64_t g,
                                                   const act_q8_32_seeded* a, std::int64_t a_stride, float* y,
                                                   std::int64_t ldy, int n_rows) {
    namespace v = simd::vnni512;
    v::f32 acc[MT];
    for (auto& x : acc) x = v::zero();
    for (std::int64_t b = 0; b < L.n_blocks; ++b) {
        v::i32 isum[MT];
        for (int t = 0; t < MT; ++t) isum[t] = v::splat(a[t * a_stride + b].seed);
        const std::byte* qb = data + L.quants_of(g, b);
        if constexpr (MT > 4) prefetch_packed_ahead<T>(qb);
        if constexpr (T == dtype::q4_0) {
            for (int c = 0; c < 4; ++c) {
                const v::bytes q = v::load(qb + 64 * c);
                v::bytes lo = v::low_nibbles(q), hi = v::high_nibbles(q);
                v::keep_in_register(lo);
                v::keep_in_register(hi);
                for (int t = 0; t < MT; ++t) {
                    const std::int8_t* x = a[t * a_stride + b].qs;
                    isum[t] = v::dot_bcast(isum[t], lo, x + 4 * c);
                    isum[t] = v::dot_bcast(isum[t], hi, x + 16 + 4 * c);
                }
            }
        } else {
            for (int c = 0; c < 8; ++c) {
                v::bytes q = v::load(qb + 64 * c);
                if constexpr (MT > 1) v::keep_in_register(q);
                for (int t = 0; t < MT; ++t) isum[t] = v::dot_bcast(isum[t], q, a[t * a_stride + b].qs + 4 * c);
            }
        }
        const v::f32 dw = v::load_f16(reinterpret_cast<const std::uint16_t*>(data + L.scales_of(g, b)));
        for (int t = 0; t < MT; ++t) acc[t] = v::fma(v::to_float(isum[t]), v::mul(dw, v::splat(a[t * a_stride + b].d)), acc[t]);
    }
    for (int t = 0; t < MT; ++t) v::store_first(y + t * ldy, acc[t], n_rows);
}

template <dtype T>
MINIGPT_TARGET_AVX512_VNNI inline void packed_tile_any(int mt, const packed_layout& L, const std::byte* data, std::int64_t g,
                                                       const act_q8_32_seeded* a, std::int64_t a_stride, float* y,
                                                       std::int64_t ldy, int n_rows) {
    switch (mt) {
        case 8: packed_tile<T, 8>(L, data, g, a, a_stride, y, ldy, n_rows); return;
        case 7: packed_tile<T, 7>(L, data, g, a, a_stride, y, ldy, n_rows); return;
        case 6: packed_tile<T, 6>(L, data, g, a, a_stride, y, ldy, n_rows); return;
        case 5: packed_tile<T, 5>(L, data, g, a, a_stride, y, ldy, n_rows); return;
        case 4: packed_tile<T, 4>(L, data, g, a, a_stride, y, ldy, n_rows); return;
        case 3: packed_tile<T, 3>(L, data, g, a, a_stride, y, ldy, n_rows); return;
        case 2: packed_tile<T, 2>(L, data, g, a, a_stride, y, ldy, n_rows); return;
        default: packed_tile<T, 1>(L, data, g, a, a_stride, y, ldy, n_rows); return;
    }
}
#endif

// Y[:, rows of groups [g0, g1)) for n_tokens tokens whose activation blocks are a (n_tokens, n_blocks).
// Y is (n_tokens, ldy).
inline void packed_groups(const packed_layout& L, const std::byte* data, const act_q8_32_seeded* a, std::int64_t n_tokens,
                          float* y, std::int64_t ldy, std::int64_t g0, std::int64_t g1) {
    const std::int64_t nb = L.n_blocks;
    [[maybe_unused]] const bool vnni = packed_kernels_vnni();
    [[maybe_unused]] const bool avx2 = !vnni && packed_kernels_vectorised();
    for (std::int64_t t0 = 0; t0 < n_tokens; t0 += k_pack_token_block) {
        const std::int64_t t1 = std::min(n_tokens, t0 + k_pack_token_block);
        for (std::int64_t g = g0; g < g1; ++g) {
            const int n_rows = static_cast<int>(std::min<std::int64_t>(k_pack_rows, L.n_rows - g * k_pack_rows));
            for (std::int64_t t = t0; t < t1; t += k_pack_mt) {
                const int mt = static_cast<int>(std::min<std::int64_t>(k_pack_mt, t1 - t));
                float* yt = y + t * ldy + g * k_pack_rows;
#if defined(MINIGPT_AVX512_VNNI_DISPATCH)
                if (vnni) {
                    if (L.type == dtype::q4_0) packed_tile_any<dtype::q4_0>(mt, L, data, g, a + t * nb, nb, yt, ldy, n_rows);
                    else packed_tile_any<dtype::q8_0>(mt, L, data, g, a + t * nb, nb, yt, ldy, n_rows);
                    continue;
                }
#endif
#if defined(MINIGPT_SIMD_INT8_AVX2)
                if (avx2) {
                    if (L.type == dtype::q4_0) packed_tile_avx2<dtype::q4_0>(mt, L, data, g, a + t * nb, nb, yt, ldy, n_rows);
                    else packed_tile_avx2<dtype::q8_0>(mt, L, data, g, a + t * nb, nb, yt, ldy, n_rows);
                    continue;
                }
#endif
                for (int i = 0; i < mt; ++i) {
                    float out[k_pack_rows];
                    packed_dot_scalar(L, data, g, a + (t + i) * nb, out);
                    std::copy(out, out + n_rows, yt + i * ldy);
                }
            }
        }
    }
}

// Activations of n_tokens tokens quantised for a packed matrix of type t, in a per-thread buffer
// that only grows. Large batches are quantised in parallel.
inline const act_q8_32_seeded* quantize_activations_seeded(const float* x, std::int64_t n_tokens, std::int64_t n_in,
                                                           dtype t, int n_threads) {
    thread_local std::vector<act_q8_32_seeded> buffer;
    const std::int64_t nb = n_in / quant::k_qk;
    const std::size_t need = static_cast<std::size_t>(
        checked_mul(static_cast<std::uint64_t>(nb), static_cast<std::uint64_t>(n_tokens), "activation blocks"));
    if (buffer.size() < need) buffer.resize(need);
    act_q8_32_seeded* a = buffer.data();
    const std::int32_t z = packed_zero_point(t);
    // Below ~16 tokens a second thread costs more to wake than the work.
    parallel_for(n_tokens, n_tokens >= 16 ? n_threads : 1, [&](std::int64_t t0, std::int64_t t1) {
        for (std::int64_t i = t0; i < t1; ++i) quantize_act_seeded(x + i * n_in, a + i * nb, n_in, z);
    });
    return a;
}

}  // namespace detail

// How packed_matrix decides whether to repack a Q4_0 / Q8_0 tensor.
enum class pack_policy {
    when_faster,  // only where the packed kernels are vectorised (a CPU with AVX2 or AVX-512 VNNI); default
    always,       // whenever the type has a packed layout (tests use it for the scalar fallback)
    never,
};

// A weight matrix (n_out, n_in) prepared for matmul: the original tensor, plus for Q4_0 / Q8_0 a
// row-interleaved copy (quant/repack.hpp) that matmul uses instead. The copy costs as much memory as
// the tensor's data and one pass over it to build (done once, at model load: see model/context.hpp).
// Other types are used as they are. Copies share the packed data.
class packed_matrix {
public:
    packed_matrix() = default;
    explicit packed_matrix(tensor w, pack_policy policy = pack_policy::when_faster, int n_threads = 0)
        : packed_matrix(std::move(w), policy, n_threads, nullptr) {}

    // As above, with the packed copy written to `storage` (64-byte aligned, at least packed_bytes(w,
    // policy) bytes): model_matrices packs a whole model into slices of one huge-page buffer. A null
    // storage allocates one for this matrix.
    packed_matrix(tensor w, pack_policy policy, int n_threads, std::shared_ptr<std::byte> storage)
        : source_(std::move(w)) {
        const std::size_t n_bytes = packed_bytes(source_, policy);
        if (n_bytes == 0) return;
        layout_ = quant::packed_layout(source_.type(), source_.dim(0), source_.dim(1));
        // Not zero-filled: pack_groups writes every byte, and the threads that do so take the page
        // faults of the fresh memory in parallel (zeroing first made packing ~2x slower).
        std::shared_ptr<std::byte> buffer = storage ? std::move(storage) : heap_buffer(n_bytes, fill::none);
        const std::int64_t stride = source_.stride_bytes(0);
        const quant::packed_layout& layout = layout_;
        const std::byte* src = source_.raw();
        std::byte* dst = buffer.get();
        parallel_for(layout_.n_groups, n_threads, [&](std::int64_t g0, std::int64_t g1) {
            quant::pack_groups(layout, src, stride, dst, g0, g1);
        });
        data_ = std::move(buffer);
    }

    // The bytes (a multiple of 64) of the copy packed_matrix(w, policy) makes; 0 when w is used as it is.
    static std::size_t packed_bytes(const tensor& w, pack_policy policy = pack_policy::when_faster) {
        if (w.empty()) throw shape_error("packed_matrix: weight tensor has no data");
        if (w.rank() != 2) throw shape_error("packed_matrix: weight must be rank 2 (n_out, n_in), got shape " + w.shape_string());
        const bool pack = quant::has_packed_layout(w.type()) && policy != pack_policy::never &&
                          (policy == pack_policy::always || detail::packed_kernels_vectorised());
        if (!pack) return 0;
        const std::int64_t n_bytes = quant::packed_layout(w.type(), w.dim(0), w.dim(1)).n_bytes;
        return static_cast<std::size_t>(std::max<std::int64_t>(64, (n_bytes + 63) / 64 * 64));
    }

    const tensor& source() const noexcept { return source_; }
    bool empty() const noexcept { return source_.empty(); }
    bool is_packed() const noexcept { return data_ != nullptr; }
    const quant::packed_layout& layout() const noexcept { return layout_; }
    const std::byte* packed_data() const noexcept { return data_.get(); }
    dtype type() const noexcept { return source_.type(); }
    std::int64_t n_out() const { return source_.dim(0); }
    std::int64_t n_in() const { return source_.dim(1); }

private:
    tensor source_;
    quant::packed_layout layout_;
    std::shared_ptr<std::byte> data_;
};

}  // namespace minigpt::kernels
