// libFuzzer harness: a prompt-cache (KV state) file, generate/prompt_cache.hpp, against a fixed model.
// Byte 0: bit 0 set: the file's trailing FNV-1a checksum is recomputed before loading, so mutations
// reach the fields and rows behind it (a checksum is otherwise what rejects nearly every mutation);
// bit 1: the context's KV cache is f16 instead of f32. The rest is the file.
// load_prompt_cache restores into an empty 16-position context on the fixed model (fixed_model.hpp)
// for the prompt fixed_prompt(), then the tail of the prompt is decoded and one more token.
// Checked: a rejected file leaves the context empty (documented: unchanged on error); an accepted
// one restores at most prompt length - 1 positions, exactly the common prefix of the saved tokens.
// Seeds: files saved by save_prompt_cache from the fixed model (make_seeds.cpp), f32 and f16 caches.
#include "fixed_model.hpp"
#include "fuzz_common.hpp"
#include "minigpt/generate/prompt_cache.hpp"

using namespace minigpt;

MINIGPT_FUZZ_TARGET(prompt_cache) {
    if (size < 1) return 0;
    static const auto m = fuzz::fixed_llm().weights;
    std::string file(reinterpret_cast<const char*>(data + 1), size - 1);
    if ((data[0] & 1) && file.size() >= 8) {
        const std::uint64_t sum = detail::prompt_cache_fnv(file.data(), file.size() - 8, 1469598103934665603ull);
        std::memcpy(file.data() + file.size() - 8, &sum, 8);
    }
    const std::string& path = fuzz::write_scratch(reinterpret_cast<const std::uint8_t*>(file.data()), file.size(), "-kv.bin");
    context ctx(m, {.n_ctx = 16, .kv_type = (data[0] & 2) ? dtype::f16 : dtype::f32, .n_threads = 1});
    const auto& prompt = fuzz::fixed_prompt();
    bool loaded = false;
    prompt_cache_info info;
    fuzz::guarded("prompt cache load", [&] {
        info = load_prompt_cache(path, ctx, prompt);
        loaded = true;
    });
    if (!loaded) {
        fuzz::fuzz_check(ctx.n_past() == 0, "a rejected prompt cache changed the context");
        return 0;
    }
    std::int64_t common = 0;
    while (common + 1 < static_cast<std::int64_t>(prompt.size()) && common < static_cast<std::int64_t>(info.tokens.size()) &&
           info.tokens[static_cast<std::size_t>(common)] == prompt[static_cast<std::size_t>(common)])
        ++common;
    fuzz::fuzz_check(info.n_restored == common && ctx.n_past() == common, "restored positions are not the common prefix");
    fuzz::guarded("prompt cache decode", [&] {
        ctx.decode(std::span(prompt).subspan(static_cast<std::size_t>(info.n_restored)));
        const std::int32_t next[1] = {258};
        ctx.decode(next);
    });
    return 0;
}
