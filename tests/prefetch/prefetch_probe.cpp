// Compiled to assembly (not linked) by check_prefetch.cmake, which requires a prefetcht1 in each
// function below: a software prefetch the optimiser deletes costs nothing visible but the speed it
// was written for (GCC 12 deleted the paged-attention kernel's requests; see simd/prefetch.hpp).
#include <cstddef>
#include <cstdint>
#include <span>

#include "minigpt/kernels/attention_paged.hpp"
#include "minigpt/kernels/matmul_packed.hpp"

// The paged-attention kernel over an F16 cache: its requests sit in loops whose trip counts are
// known only at run time (written with __builtin_prefetch, GCC 12 removed them at -O2 and -O3).
template void minigpt::kernels::detail::attn_rows_paged<std::uint16_t>(
    const float*, std::int64_t, std::int64_t, const std::uint16_t*, const std::uint16_t*, std::int64_t,
    std::span<const std::int32_t>, std::int64_t, std::int64_t, std::int64_t, std::int64_t, float, float, float*,
    const float*, const float*, float*, float*);

// The packed weight tiles' request for the blocks ahead (a loop of constant trip count).
template void minigpt::kernels::detail::prefetch_packed_ahead<minigpt::dtype::q8_0>(const std::byte*);
