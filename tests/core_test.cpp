// Tests for core/: fp16/bf16 conversions against independent references, dtype geometry,
// tensor views and shapes, the thread helper, and errors on bad input.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <atomic>
#include <chrono>
#include <latch>
#include <thread>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/eigen.hpp"
#include "minigpt/core/half.hpp"
#include "minigpt/core/memory.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/core/threads.hpp"

#if defined(__F16C__)
#include <immintrin.h>
#endif

using namespace minigpt;

namespace {

// Independent fp16 -> double reference from the IEEE definition.
double fp16_reference(std::uint16_t h) {
    const int sign = (h >> 15) ? -1 : 1;
    const int exp = (h >> 10) & 0x1f;
    const int mant = h & 0x3ff;
    if (exp == 0) return sign * std::ldexp(mant, -24);
    if (exp == 31) return mant ? std::numeric_limits<double>::quiet_NaN() : sign * std::numeric_limits<double>::infinity();
    return sign * std::ldexp(1024 + mant, exp - 25);
}

}  // namespace

TEST(Half, Fp16ToFp32AllValuesMatchDefinition) {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const float f = fp16_to_fp32(static_cast<std::uint16_t>(h));
        const double ref = fp16_reference(static_cast<std::uint16_t>(h));
        if (std::isnan(ref)) {
            ASSERT_TRUE(std::isnan(f)) << h;
        } else {
            ASSERT_EQ(static_cast<double>(f), ref) << h;
            ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << h;
        }
    }
}

TEST(Half, Fp16RoundTripOfEveryFiniteValue) {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) continue;  // NaN payloads checked below
        ASSERT_EQ(fp32_to_fp16(fp16_to_fp32(static_cast<std::uint16_t>(h))), h) << h;
    }
}

TEST(Half, Fp32ToFp16RoundsToNearestEven) {
    // Exactly halfway between 1 and the next fp16 (1 + 2^-10): ties to even -> 1.
    EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
    // Halfway between 1+2^-10 (odd mantissa) and 1+2^-9: rounds up to even.
    EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
    EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
    EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7bff);
    EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);  // rounds to inf
    EXPECT_EQ(fp32_to_fp16(-std::numeric_limits<float>::infinity()), 0xfc00);
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);       // smallest subnormal
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);       // tie -> even (0)
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
    EXPECT_EQ(fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);       // 1.5 ulp tie -> even 2
    EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1023.0f, -24) + std::ldexp(1.0f, -25)), 0x0400);  // carries into normal
    const std::uint16_t nan = fp32_to_fp16(std::numeric_limits<float>::quiet_NaN());
    EXPECT_EQ(nan & 0x7c00, 0x7c00);
    EXPECT_NE(nan & 0x3ff, 0);
}

#if defined(__F16C__)
TEST(Half, Fp32ToFp16MatchesHardwareOnRandomBits) {
    std::mt19937 rng(42);
    for (int i = 0; i < 2000000; ++i) {
        const std::uint32_t bits = rng();
        const float f = std::bit_cast<float>(bits);
        const std::uint16_t hw = static_cast<std::uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
        const std::uint16_t sw = fp32_to_fp16(f);
        if (std::isnan(f)) {
            ASSERT_TRUE(std::isnan(fp16_to_fp32(sw)));
        } else {
            ASSERT_EQ(sw, hw) << std::hex << bits;
        }
    }
}
#endif

TEST(Half, Bf16) {
    EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
    // 1 + 2^-8 is halfway between bf16 1 and 1+2^-7: ties to even -> 1.
    EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
    EXPECT_EQ(fp32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
    EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
    EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
    EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::bit_cast<float>(0x7f800001u)))));  // signalling NaN stays NaN
    const float sub = std::bit_cast<float>(0x00010000u);  // a float subnormal exactly representable in bf16
    EXPECT_EQ(fp32_to_bf16(sub), 0x0001);
    EXPECT_EQ(bf16_to_fp32(0x0001), sub);
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const float f = bf16_to_fp32(static_cast<std::uint16_t>(h));
        if (std::isnan(f)) continue;
        ASSERT_EQ(fp32_to_bf16(f), h);
    }
}

TEST(Dtype, Geometry) {
    EXPECT_EQ(block_size(dtype::q8_0), 32u);
    EXPECT_EQ(block_bytes(dtype::q8_0), 34u);
    EXPECT_EQ(block_bytes(dtype::q4_0), 18u);
    EXPECT_EQ(block_bytes(dtype::q4_k), 144u);
    EXPECT_EQ(block_bytes(dtype::q6_k), 210u);
    EXPECT_EQ(row_bytes(dtype::q4_k, 512), 288u);
    EXPECT_EQ(row_bytes(dtype::f16, 7), 14u);
    EXPECT_THROW(row_bytes(dtype::q8_0, 33), shape_error);
    EXPECT_EQ(parse_dtype("Q4_K"), dtype::q4_k);
    EXPECT_EQ(parse_dtype("Q5_1"), dtype::q5_1);
    EXPECT_THROW(parse_dtype("q8_1"), error);
    EXPECT_FALSE(find_dtype(9).has_value());  // q8_1: an activation type only
    EXPECT_THROW(traits(static_cast<dtype>(99)), error);
}

TEST(Tensor, OwningIsAlignedAndZeroed) {
    auto t = tensor::empty(dtype::f32, {3, 5});
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.raw()) % 64, 0u);
    EXPECT_EQ(t.n_elements(), 15);
    EXPECT_EQ(t.n_bytes(), 60);
    for (int i = 0; i < 15; ++i) EXPECT_EQ(t.data<float>()[i], 0.0f);
    EXPECT_TRUE(t.is_contiguous());
}

// Buffers of 2 MiB or more start on a huge-page boundary (what a 2 MiB page-table entry needs) and
// are zero like the small ones; both are writable to the last byte and freed without complaint.
TEST(Memory, HeapBufferAlignmentAndZeroFill) {
    for (std::size_t n_bytes : {std::size_t(1), std::size_t(100), k_huge_page_bytes - 1, k_huge_page_bytes,
                                3 * k_huge_page_bytes + 12345}) {
        auto b = heap_buffer(n_bytes);
        const auto address = reinterpret_cast<std::uintptr_t>(b.get());
        EXPECT_EQ(address % 64, 0u) << n_bytes;
        if (n_bytes >= k_huge_page_bytes) {
            EXPECT_EQ(address % k_huge_page_bytes, 0u) << n_bytes;
        }
        std::size_t n_nonzero = 0;
        for (std::size_t i = 0; i < n_bytes; ++i) n_nonzero += b.get()[i] != std::byte{0};
        EXPECT_EQ(n_nonzero, 0u) << n_bytes;
        std::memset(b.get(), 0xab, n_bytes);
    }
    auto t = tensor::empty(dtype::f32, {1024, 1024});  // 4 MiB: a huge-page buffer
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.raw()) % k_huge_page_bytes, 0u);
    EXPECT_EQ(t.data<float>()[1024 * 1024 - 1], 0.0f);
}

TEST(Tensor, ViewsRowsAndEigen) {
    float data[24];
    for (int i = 0; i < 24; ++i) data[i] = static_cast<float>(i);
    auto t = tensor::view(dtype::f32, {2, 3, 4}, data);
    EXPECT_EQ(t.rank(), 3);
    EXPECT_EQ(t.n_rows(), 6);
    EXPECT_EQ(t.row<float>(4)[1], 17.0f);
    auto s = t[1];
    EXPECT_EQ(s.rank(), 2);
    EXPECT_EQ(s.shape_string(), "(3, 4)");
    EXPECT_EQ(eigen_view(s)(2, 3), 23.0f);
    auto r = t.rows(1, 2).reshape({12});
    EXPECT_EQ(r.data<float>()[0], 12.0f);
    EXPECT_EQ(eigen_view(t).rows(), 6);
    EXPECT_THROW(t.row_ptr(6), shape_error);
    EXPECT_THROW(t[2], shape_error);
    EXPECT_THROW(t.reshape({5, 5}), shape_error);
}

TEST(Tensor, QuantizedRowsAndErrors) {
    auto q = tensor::empty(dtype::q8_0, {4, 64});
    EXPECT_EQ(q.row_bytes(), 68);
    EXPECT_EQ(q.row_ptr(3) - q.raw(), 3 * 68);
    EXPECT_THROW(eigen_view(q), shape_error);
    EXPECT_THROW(tensor::empty(dtype::q8_0, {4, 33}), shape_error);
    EXPECT_THROW(tensor::view(dtype::f32, {4}, nullptr), error);
    EXPECT_THROW(tensor::empty(dtype::f32, {1, 2, 3, 4, 5}), shape_error);
    EXPECT_THROW(tensor::empty(dtype::f32, {std::int64_t(1) << 40, std::int64_t(1) << 40}), error);
}

TEST(Threads, ParallelForCoversRangeOnce) {
    std::vector<int> hits(1001, 0);
    parallel_for(1001, 2, [&](std::int64_t b, std::int64_t e) {
        for (auto i = b; i < e; ++i) hits[static_cast<std::size_t>(i)]++;
    }, 16);
    for (int h : hits) EXPECT_EQ(h, 1);
    EXPECT_GE(physical_cores(), 1);
}

// Runs `n_callers` threads that each call parallel_for(n_threads) at the same moment, with work that
// holds every thread for a while; returns the most threads seen inside the loop bodies at once.
static int peak_threads_of_concurrent_callers(int n_callers, int n_threads) {
    std::atomic<int> active{0}, peak{0}, covered{0};
    std::latch start(n_callers);
    std::vector<std::thread> callers;
    for (int c = 0; c < n_callers; ++c)
        callers.emplace_back([&] {
            start.arrive_and_wait();
            parallel_for(8, n_threads, [&](std::int64_t b, std::int64_t e) {
                const int now = ++active;
                for (int p = peak.load(); now > p && !peak.compare_exchange_weak(p, now);) {}
                std::this_thread::sleep_for(std::chrono::milliseconds(60));
                covered += static_cast<int>(e - b);
                --active;
            });
        });
    for (auto& t : callers) t.join();
    EXPECT_EQ(covered.load(), 8 * n_callers);
    EXPECT_EQ(detail::threads_in_use().load(), 0);
    return peak.load();
}

// The team is persistent: repeated loops reuse the same helper threads (no thread per loop), a loop
// inside a loop runs on its own thread only, and loops from many threads at once all complete.
TEST(Threads, PersistentTeamReusesHelpersAndRunsNestedLoopsSerially) {
    std::vector<int> hits(64, 0);
    parallel_for(64, 2, [&](std::int64_t b, std::int64_t e) {
        for (auto i = b; i < e; ++i) hits[static_cast<std::size_t>(i)]++;
    });
    const int started = detail::worker_pool::instance().started();
    EXPECT_GE(started, 1);
    for (int rep = 0; rep < 200; ++rep)
        parallel_for_balanced(64, 2, [&](std::int64_t b, std::int64_t e) {
            for (auto i = b; i < e; ++i) hits[static_cast<std::size_t>(i)]++;
        }, 4);
    EXPECT_EQ(detail::worker_pool::instance().started(), started);
    for (int h : hits) EXPECT_EQ(h, 201);

    EXPECT_FALSE(in_parallel_region());
    std::atomic<int> nested_bad{0}, nested_calls{0};
    parallel_for(4, 4, [&](std::int64_t, std::int64_t) {
        if (!in_parallel_region()) ++nested_bad;
        const auto outer = std::this_thread::get_id();
        parallel_for(8, 4, [&](std::int64_t b, std::int64_t e) {
            ++nested_calls;
            if (b != 0 || e != 8 || std::this_thread::get_id() != outer) ++nested_bad;
        });
    });
    EXPECT_EQ(nested_bad.load(), 0);
    EXPECT_EQ(nested_calls.load(), 4);
    EXPECT_FALSE(in_parallel_region());
}

TEST(Threads, CallerThreadsShareOneBudget) {
    set_max_threads(2);
    // Four callers asking for two threads each on a budget of two: the callers' own four threads
    // plus at most one helper (8 threads without the budget).
    EXPECT_LE(peak_threads_of_concurrent_callers(4, 2), 5);
    // One caller alone gets what it asks for, even above the budget.
    EXPECT_EQ(peak_threads_of_concurrent_callers(1, 2), 2);
    EXPECT_EQ(peak_threads_of_concurrent_callers(1, 4), 4);
    set_max_threads(0);
    EXPECT_EQ(max_threads(), physical_cores());
}
