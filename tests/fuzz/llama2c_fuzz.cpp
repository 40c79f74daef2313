// libFuzzer harness: llama2.c checkpoint bytes -> llama2c_checkpoint -> model -> one decode.
// Seeds: corpus/llama2c (tiny checkpoints written by make_seeds.cpp).
#include <cstring>

#include "fuzz_common.hpp"
#include "minigpt/io/llama2c.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/model.hpp"

using namespace minigpt;

MINIGPT_FUZZ_TARGET(llama2c) {
    fuzz::guarded("llama2c", [&] {
        auto ck = std::make_shared<const io::llama2c_checkpoint>(io::llama2c_checkpoint::from_memory(fuzz::bytes_of(data, size), "fuzz.bin"));
        const auto m = model::from_llama2c(ck);
        context_params p;
        p.n_ctx = 8;
        p.n_threads = 1;
        context ctx(m, p);
        const std::int32_t ids[2] = {0, static_cast<std::int32_t>(m->config().n_vocab) - 1};
        ctx.decode(ids);
    });
    return 0;
}
