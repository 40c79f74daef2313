// Many threads on one model: several contexts, each on its own caller thread and each asking for
// two threads per loop, decode at once over one shared (read-only) model. Every context must end
// with exactly the logits the same tokens give when decoded alone on one thread (rows and heads are
// split between threads, never summed across them, so the results are bit-identical). This is the
// test scripts/test-sanitizers runs under ThreadSanitizer: the worker team's hand-overs
// (core/worker_pool.hpp) and the process-wide thread budget with callers racing for helpers.
#include <gtest/gtest.h>

#include <latch>
#include <thread>
#include <vector>

#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/model.hpp"
#include "minigpt/model/synth.hpp"

using namespace minigpt;

namespace {

// A random-weight Llama big enough that its matmuls are shared between threads (>= 64 KiB each).
std::shared_ptr<const model> small_llama() {
    static const auto m = [] {
        io::gguf_writer w;
        synthesize(w, find_synth_preset(architecture::llama, "small"), dtype::q8_0, 3, 0, 1);
        auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
        return model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, "small-llama")));
    }();
    return m;
}

// Prefill of 9 tokens, then 3 single-token steps; the logits of every step, concatenated.
std::vector<float> run(const std::shared_ptr<const model>& m, int n_threads, std::int32_t seed) {
    context_params p;
    p.n_ctx = 32;
    p.n_threads = n_threads;
    context ctx(m, p);
    std::vector<std::int32_t> prompt;  // (9)
    for (std::int32_t i = 0; i < 9; ++i) prompt.push_back((seed * 7919 + i * 104729) % 32000);
    std::vector<float> out;
    ctx.decode(prompt);
    out.insert(out.end(), ctx.logits().begin(), ctx.logits().end());
    for (std::int32_t s = 0; s < 3; ++s) {
        const std::int32_t next[1] = {(seed * 31 + s * 977) % 32000};
        ctx.decode(next);
        out.insert(out.end(), ctx.logits().begin(), ctx.logits().end());
    }
    return out;
}

}  // namespace

TEST(Concurrency, ContextsDecodingAtOnceMatchDecodingAlone) {
    const auto m = small_llama();
    constexpr int k_callers = 4;
    std::vector<std::vector<float>> alone(k_callers), together(k_callers);
    for (int c = 0; c < k_callers; ++c) alone[c] = run(m, 1, c + 1);
    set_max_threads(2 * k_callers);  // every caller gets its helper: 8 threads at once
    std::latch start(k_callers);
    std::vector<std::thread> callers;
    for (int c = 0; c < k_callers; ++c)
        callers.emplace_back([&, c] {
            start.arrive_and_wait();
            together[c] = run(m, 2, c + 1);
        });
    for (auto& t : callers) t.join();
    set_max_threads(0);
    for (int c = 0; c < k_callers; ++c) {
        ASSERT_EQ(together[c].size(), alone[c].size());
        EXPECT_TRUE(together[c] == alone[c]) << "caller " << c << ": logits differ from decoding alone";
        EXPECT_NE(alone[c], alone[(c + 1) % k_callers]);  // the callers really decode different tokens
    }
    EXPECT_EQ(detail::threads_in_use().load(), 0);
}
