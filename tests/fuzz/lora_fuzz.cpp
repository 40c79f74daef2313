// libFuzzer harness: a LoRA adapter file (llama.cpp's adapter GGUF) against a fixed base model.
// Byte 0 picks the user scale (1, 0.5, -2 or 0), the rest is the adapter file:
// lora_adapter::load -> a context of 8 positions on the fixed base (fixed_model.hpp) ->
// context::set_adapters (compatibility with the base: architecture, target names, shapes) -> one
// decode of two tokens. A context whose set_adapters failed must still decode with the base.
// Seeds: adapters for the fixed base written by make_seeds.cpp (f32 and f16 halves, attention,
// feed-forward and output targets).
#include "fixed_model.hpp"
#include "fuzz_common.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/lora.hpp"

using namespace minigpt;

MINIGPT_FUZZ_TARGET(lora) {
    if (size < 1) return 0;
    static const auto base = fuzz::fixed_llm().weights;
    const float scales[4] = {1.0f, 0.5f, -2.0f, 0.0f};
    const float scale = scales[data[0] & 3];
    const std::string& path = fuzz::write_scratch(data + 1, size - 1, "-lora.gguf");
    std::shared_ptr<const lora_adapter> adapter;
    fuzz::guarded("lora load", [&] { adapter = lora_adapter::load(path); });
    if (!adapter) return 0;
    context ctx(base, {.n_ctx = 8, .n_threads = 1});
    bool attached = false;
    fuzz::guarded("lora attach", [&] {
        ctx.set_adapters({{adapter, scale}});
        attached = true;
    });
    fuzz::fuzz_check(attached || ctx.adapters().empty(), "a rejected adapter stayed attached to the context");
    const std::int32_t ids[2] = {1, 258};
    fuzz::guarded("lora decode", [&] { ctx.decode(ids); });
    return 0;
}
