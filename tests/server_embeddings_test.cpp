// POST /v1/embeddings of `minigpt serve`, driven as clients do: curl, and the official `openai`
// npm package (installed into a scratch folder; skipped when npm cannot fetch it). The vectors
// equal `minigpt embed --pooling mean --normalize` for the same text (the embedder that command
// runs is checked against references in embedding_test), are unit length, the base64 form decodes
// (here, independently) to the float form, token-array inputs equal their text, and bad requests
// get 400s naming the field.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "minigpt/io/gguf.hpp"
#include "minigpt/text/tokenizer.hpp"
#include "serve_helpers.hpp"
#include "test_data.hpp"

using json = nlohmann::json;
using minigpt::test::run;

namespace {

using minigpt::test::k_tool;
using minigpt::test::max_abs_diff;
using minigpt::test::serve_process;

std::string model_path() { return minigpt::test::shared_path("models/stories260K.gguf"); }

std::vector<float> decode_base64_floats(const std::string& s) {
    std::vector<unsigned char> bytes;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char ch : s) {
        if (ch == '=') break;
        const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char* p = std::strchr(table, ch);
        if (!p || ch == 0) throw std::runtime_error("bad base64");
        acc = (acc << 6) | static_cast<std::uint32_t>(p - table);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            bytes.push_back(static_cast<unsigned char>((acc >> bits) & 0xff));
        }
    }
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), v.size() * 4);
    return v;
}

#define START(var, flags)                                                        \
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");                           \
    if (!std::filesystem::exists(k_tool)) GTEST_SKIP() << "minigpt not built";  \
    serve_process var(model_path(), flags);                                                        \
    ASSERT_GT(var.port(), 0) << "the server did not start:\n" << var.log()

}  // namespace

TEST(ServerEmbeddings, EqualTheEmbedCommandInBothEncodings) {
    START(s, "-np 2 -c 512");
    const std::vector<std::string> texts = {"Once upon a time", "The little dog ran to the park."};
    auto [status, r] = s.post_text("/v1/embeddings", json{{"model", "m"}, {"input", texts}}.dump());
    ASSERT_EQ(status, 200) << r;
    EXPECT_EQ(r["object"], "list");
    ASSERT_EQ(r["data"].size(), 2u);
    std::int64_t total = 0;
    for (std::size_t i = 0; i < texts.size(); ++i) {
        EXPECT_EQ(r["data"][i]["object"], "embedding");
        EXPECT_EQ(r["data"][i]["index"], i);
        const auto got = r["data"][i]["embedding"].get<std::vector<float>>();
        std::string out;
        ASSERT_EQ(run(k_tool + " embed -m " + model_path() + " -t 1 --pooling mean --normalize -p '" + texts[i] + "'", &out), 0);
        const auto cli = json::parse(out);
        EXPECT_LT(max_abs_diff(got, cli["data"][0]["embedding"].get<std::vector<float>>()), 1e-6f);
        total += cli["data"][0]["n_tokens"].get<std::int64_t>();
        double norm = 0;
        for (float x : got) norm += static_cast<double>(x) * x;
        EXPECT_NEAR(norm, 1.0, 1e-5);
        // The input alone (one sequence, not the list's batch), in base64: the same vector up to
        // the rounding of batched products, and exactly the floats of the same input in JSON.
        auto [st64, r64] = s.post_text("/v1/embeddings", json{{"input", texts[i]}, {"encoding_format", "base64"}}.dump());
        ASSERT_EQ(st64, 200) << r64;
        const auto alone = decode_base64_floats(r64["data"][0]["embedding"].get<std::string>());
        EXPECT_LT(max_abs_diff(alone, got), 1e-6f);
        auto [st_alone, r_alone] = s.post_text("/v1/embeddings", json{{"input", texts[i]}}.dump());
        ASSERT_EQ(st_alone, 200) << r_alone;
        EXPECT_EQ(r_alone["data"][0]["embedding"].get<std::vector<float>>(), alone);
    }
    EXPECT_EQ(r["usage"]["prompt_tokens"], total);
    EXPECT_EQ(r["usage"]["total_tokens"], total);
    // Token ids of the first text (with BOS, as strings get it) give the same vector.
    const auto file = minigpt::io::gguf_file::open(model_path());
    const auto tok = minigpt::tokenizer::from_gguf(file);
    const auto ids = tok.encode(texts[0], tok.add_bos_default());
    auto [st_ids, r_ids] = s.post_text("/v1/embeddings", json{{"input", ids}}.dump());
    ASSERT_EQ(st_ids, 200) << r_ids;
    EXPECT_LT(max_abs_diff(r_ids["data"][0]["embedding"].get<std::vector<float>>(), r["data"][0]["embedding"].get<std::vector<float>>()),
              1e-6f);
    auto [st_nested, r_nested] = s.post_text("/v1/embeddings", json{{"input", json::array({ids, ids})}}.dump());
    ASSERT_EQ(st_nested, 200) << r_nested;
    EXPECT_EQ(r_nested["data"].size(), 2u);
    // More inputs than one forward pass takes (16 sequences): every vector still equals its input
    // embedded alone.
    std::vector<std::string> many;
    for (int i = 0; i < 21; ++i) many.push_back(texts[static_cast<std::size_t>(i) % 2] + std::string(static_cast<std::size_t>(i % 5), '!'));
    auto [st_many, r_many] = s.post_text("/v1/embeddings", json{{"input", many}}.dump());
    ASSERT_EQ(st_many, 200) << r_many;
    ASSERT_EQ(r_many["data"].size(), many.size());
    for (std::size_t i = 0; i < many.size(); i += 4) {
        auto [st1, r1] = s.post_text("/v1/embeddings", json{{"input", many[i]}}.dump());
        ASSERT_EQ(st1, 200) << r1;
        EXPECT_EQ(r_many["data"][i]["index"], i);
        EXPECT_LT(max_abs_diff(r_many["data"][i]["embedding"].get<std::vector<float>>(), r1["data"][0]["embedding"].get<std::vector<float>>()),
                  1e-6f)
            << i;
    }
}

TEST(ServerEmbeddings, BadRequestsNameTheField) {
    START(s, "-np 1 -c 128");
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"model":"m"})", "input"},
        {R"({"input":""})", "input"},
        {R"({"input":[]})", "input"},
        {R"({"input":[1, 99999]})", "input"},
        {R"({"input":[1, "x"]})", "input"},
        {R"({"input":42})", "input"},
        {R"({"input":"x","encoding_format":"int8"})", "encoding_format"},
        {R"({"input":"x","dimensions":3})", "dimensions"},
        {R"({"input":"x","pooling":"max"})", "pooling"},
    };
    for (const auto& [body, param] : cases) {
        auto [status, r] = s.post_text("/v1/embeddings", body);
        EXPECT_EQ(status, 400) << body;
        EXPECT_EQ(r["error"]["param"], param) << body << " -> " << r;
    }
    std::string long_text(400, 'a');  // byte-level vocabulary: > 128 tokens
    auto [status, r] = s.post_text("/v1/embeddings", json{{"input", long_text}}.dump());
    EXPECT_EQ(status, 400);
    EXPECT_EQ(r["error"]["code"], "context_length_exceeded") << r;
    auto [st_bad, r_bad] = s.post_text("/v1/embeddings", "{not json");
    EXPECT_EQ(st_bad, 400);
}

TEST(ServerEmbeddings, PoolingFlagIsCheckedBeforeLoading) {
    if (!std::filesystem::exists(k_tool)) GTEST_SKIP() << "minigpt not built";
    std::string out;
    EXPECT_NE(run(k_tool + " serve -m /nonexistent.gguf --pooling none 2>&1", &out), 0);
    EXPECT_NE(out.find("--pooling"), std::string::npos) << out;
}

TEST(ServerEmbeddings, OfficialOpenAINodeClient) {
    std::string out;
    const std::filesystem::path dir = minigpt::test::openai_npm_dir(&out);
    if (dir.empty()) GTEST_SKIP() << "npm install openai failed (offline?): " << out;
    START(s, "-np 1 -c 256");
    const std::string script = R"JS(
const OpenAI = require('openai');
(async () => {
  const client = new OpenAI({ baseURL: process.argv[2], apiKey: 'none' });
  const e = await client.embeddings.create({ model: 'm', input: ['Once upon a time', 'The little dog ran to the park.'] });
  const f = await client.embeddings.create({ model: 'm', input: 'Once upon a time', encoding_format: 'float' });
  console.log(JSON.stringify({ n: e.data.length, first: e.data[0].embedding, float: f.data[0].embedding,
                               usage: e.usage.prompt_tokens }));
})().catch(e => { console.error(e); process.exit(1); });
)JS";
    std::ofstream(dir / "embeddings.js") << script;
    ASSERT_EQ(run("cd " + dir.string() + " && timeout 60 node embeddings.js " + s.url("/v1") + " 2>&1", &out), 0) << out;
    const auto r = json::parse(out);
    EXPECT_EQ(r["n"], 2);
    const auto first = r["first"].get<std::vector<float>>();
    EXPECT_EQ(first.size(), 64u);  // stories260K's width
    EXPECT_LT(max_abs_diff(first, r["float"].get<std::vector<float>>()), 1e-6f);  // the client's default (base64) decoded
    EXPECT_GT(r["usage"].get<int>(), 0);
}
