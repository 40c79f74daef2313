// libFuzzer harness: GGUF bytes -> gguf_file -> tokenizer (if the file has one) -> model -> one decode.
// Seeds: corpus/gguf_model (tiny random-weight llama/gpt2 models written by make_seeds.cpp).
#include <cstring>

#include "fuzz_common.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/model.hpp"
#include "minigpt/text/tokenizer.hpp"

using namespace minigpt;

MINIGPT_FUZZ_TARGET(gguf_model) {
    std::shared_ptr<const io::gguf_file> file;
    fuzz::guarded("gguf parse", [&] { file = std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(fuzz::bytes_of(data, size), "fuzz.gguf")); });
    if (!file) return 0;
    fuzz::guarded("gguf tokenizer", [&] {
        const tokenizer tok = tokenizer::from_gguf(*file);
        for (bool special : {false, true}) {
            const auto ids = tok.encode("Hello <s> world</s> \xE2\x96\x81 caf\xC3\xA9 \xF0\x9F\x98\x80!", false, special);
            (void)tok.decode(ids);
        }
    });
    fuzz::guarded("gguf model", [&] {
        const auto m = model::from_gguf(file);
        context_params p;
        p.n_ctx = 8;      // the harness decodes two tokens; the default context size has its own test
        p.n_threads = 1;  // one thread: reproducible runs and sanitizer reports
        context ctx(m, p);
        const auto n_vocab = static_cast<std::int32_t>(m->config().n_vocab);
        const std::int32_t ids[2] = {0, n_vocab - 1};
        ctx.decode(ids);
        bool rejected = false;
        try {
            const std::int32_t bad[1] = {n_vocab};
            ctx.decode(bad);
        } catch (const minigpt::error&) {
            rejected = true;
        }
        fuzz::fuzz_check(rejected, "decode accepted a token id equal to n_vocab");
    });
    return 0;
}
