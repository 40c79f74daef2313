// LoRA adapters on one shared base: two contexts, one with an adapter and one without, generate
// greedily from the same prompt. Usage: example_lora BASE.gguf ADAPTER.gguf [SCALE]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "minigpt/model/context.hpp"
#include "minigpt/model/lora.hpp"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s BASE.gguf ADAPTER.gguf [SCALE]\n", argv[0]);
        return 2;
    }
    try {
        auto base = minigpt::model::load(argv[1]);
        auto adapter = minigpt::lora_adapter::load(argv[2]);
        const float scale = argc > 3 ? std::strtof(argv[3], nullptr) : 1.0f;
        std::printf("adapter: %zu matrices, alpha %.1f, scale %.2f\n", adapter->pairs().size(), adapter->alpha(), scale);
        for (bool with_adapter : {false, true}) {
            minigpt::context ctx(base, {.n_ctx = 64});
            if (with_adapter) ctx.set_adapters({{adapter, scale}});
            std::vector<std::int32_t> ids = {1};
            for (int i = 0; i < 16; ++i) {
                ctx.decode(std::span(ids).last(1));
                const auto l = ctx.logits(0);
                ids.push_back(static_cast<std::int32_t>(std::max_element(l.begin(), l.end()) - l.begin()));
            }
            std::printf("%s:", with_adapter ? "with adapter" : "base        ");
            for (auto id : ids) std::printf(" %d", id);
            std::printf("\n");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
