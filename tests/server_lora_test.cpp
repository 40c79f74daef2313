// Per-request LoRA adapters in `minigpt serve` (serve/adapters_api.hpp), against llama.cpp: the
// server runs stories260K with ../shared/models/lora/stories260K-lora.gguf loaded at scale 0.5;
// greedy completions of the shared prompt must be llama.cpp's greedy ids with the adapter at the
// scale each request asks for (1 through "lora", 0.5 by default), requests with different
// adapters run side by side on the slots (each slot reuses a cached prompt only under the same
// adapters), "lora": [] is the base model, POST /lora-adapters changes the default, and bad lists
// are 400s naming 'lora'.
#include <gtest/gtest.h>

#include <future>
#include <string>
#include <vector>

#include "minigpt/model.hpp"
#include "serve_helpers.hpp"
#include "test_data.hpp"

using json = nlohmann::json;
using minigpt::test::serve_process;
using minigpt::test::shared_path;

namespace {

// The text `generated` adds after `prompt` (what a completion returns).
std::string continuation(const minigpt::tokenizer& tok, const std::vector<std::int32_t>& prompt, const std::vector<std::int32_t>& generated) {
    std::vector<std::int32_t> all = prompt;
    all.insert(all.end(), generated.begin(), generated.end());
    return tok.decode(all).substr(tok.decode(prompt).size());
}

std::string expected_text(const minigpt::tokenizer& tok, const std::vector<std::int32_t>& prompt, const std::string& golden) {
    return continuation(tok, prompt, minigpt::test::read_ids(shared_path("models/lora/" + golden + ".greedy-ids.txt")));
}

}  // namespace

TEST(ServerLora, PerRequestAdaptersMatchLlamaCpp) {
    MINIGPT_REQUIRE_SHARED("models/lora/stories260K-lora.gguf");
    if (!std::filesystem::exists(minigpt::test::k_tool)) GTEST_SKIP() << "minigpt not built";
    const std::string model = shared_path("models/stories260K.gguf"), adapter = shared_path("models/lora/stories260K-lora.gguf");
    serve_process s(model, "-np 2 -c 512 --lora-scaled " + adapter + " 0.5");
    ASSERT_GT(s.port(), 0) << s.log();
    const auto lm = minigpt::llm::load(model);
    const auto prompt = minigpt::test::read_ids(shared_path("models/lora/stories260K.prompt-ids.txt"));
    const auto n = minigpt::test::read_ids(shared_path("models/lora/stories260K-lora-scale1.greedy-ids.txt")).size();
    auto body = [&](const json& lora) {
        json b{{"prompt", prompt}, {"max_tokens", n}, {"temperature", 0}, {"ignore_eos", true}};
        if (!lora.is_null()) b["lora"] = lora;
        return b.dump();
    };
    auto text = [&](const std::pair<int, json>& r) {
        EXPECT_EQ(r.first, 200) << r.second;
        return r.second["choices"][0]["text"].get<std::string>();
    };
    const std::string want1 = expected_text(*lm.vocab, prompt, "stories260K-lora-scale1"),
                      want05 = expected_text(*lm.vocab, prompt, "stories260K-lora-scale0.5");
    ASSERT_NE(want1, want05);

    auto [st, list] = s.get("/lora-adapters");
    ASSERT_EQ(st, 200) << list;
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0]["id"], 0);
    EXPECT_EQ(list[0]["path"], adapter);
    EXPECT_EQ(list[0]["scale"], 0.5);

    // Default (0.5), per request (1), and the base ([] or scale 0) side by side, twice each.
    const json one = json::array({{{"id", 0}, {"scale", 1.0}}}), zero = json::array({{{"id", 0}, {"scale", 0.0}}});
    std::vector<std::future<std::pair<int, json>>> f;
    for (int round = 0; round < 2; ++round)
        for (const json& lora : {json(), one, json::array(), zero})
            f.push_back(std::async(std::launch::async, [&, lora] { return s.post_text("/v1/completions", body(lora)); }));
    std::vector<std::string> got;
    for (auto& x : f) got.push_back(text(x.get()));
    for (int round = 0; round < 2; ++round) {
        EXPECT_EQ(got[4 * round + 0], want05) << "default scale 0.5";
        EXPECT_EQ(got[4 * round + 1], want1) << "lora scale 1";
        EXPECT_EQ(got[4 * round + 2], got[4 * round + 3]) << "[] and scale 0 are both the base";
        EXPECT_NE(got[4 * round + 2], want05);
    }
    // The base equals a plain greedy run of the library without adapters.
    minigpt::context ctx(lm.weights, {.n_ctx = 256});
    std::vector<std::int32_t> ids(prompt.begin(), prompt.end()), base_ids;
    ctx.decode(ids);
    for (std::size_t i = 0; i < n; ++i) {
        const auto l = ctx.logits();
        const auto id = static_cast<std::int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
        base_ids.push_back(id);
        ctx.decode(std::span(&id, 1));
    }
    EXPECT_EQ(got[2], continuation(*lm.vocab, prompt, base_ids));

    // A new default.
    auto [st_set, set] = s.post_text("/lora-adapters", one.dump());
    ASSERT_EQ(st_set, 200) << set;
    EXPECT_EQ(set[0]["scale"], 1.0);
    EXPECT_EQ(text(s.post_text("/v1/completions", body(json()))), want1);

    // Bad lists.
    for (const std::string bad : {R"([{"id":1,"scale":1}])", R"({"id":0,"scale":1})", R"([{"id":0}])", R"([{"id":0,"scale":"x"}])",
                                  R"([{"id":0,"scale":1},{"id":0,"scale":2}])"}) {
        json b = json::parse(body(json()));
        b["lora"] = json::parse(bad);
        auto [code, r] = s.post_text("/v1/completions", b.dump());
        EXPECT_EQ(code, 400) << bad;
        EXPECT_EQ(r["error"]["param"], "lora") << bad << " -> " << r;
        auto [code2, r2] = s.post_text("/lora-adapters", bad);
        EXPECT_EQ(code2, 400) << bad;
    }
}

TEST(ServerLora, AdapterOfAnotherModelIsRefusedAtStartup) {
    MINIGPT_REQUIRE_SHARED("models/lora/qwen2-tiny-lora.gguf");
    if (!std::filesystem::exists(minigpt::test::k_tool)) GTEST_SKIP() << "minigpt not built";
    std::string out;
    EXPECT_NE(minigpt::test::run("timeout 30 " + minigpt::test::k_tool + " serve -m " + shared_path("models/stories260K.gguf") + " --port 0 --lora " +
                                     shared_path("models/lora/qwen2-tiny-lora.gguf") + " 2>&1",
                                 &out),
              0);
    EXPECT_NE(out.find("qwen2"), std::string::npos) << out;
}
