// Integration test of `minigpt serve`: starts the real binary (MINIGPT_TOOL) on a free loopback
// port with a small model and drives it as clients do, with curl and with the official `openai`
// npm package (installed from the npm registry into a scratch folder; skipped when that fails,
// e.g. offline). Checks completions, chat, streaming, n > 1, logprobs, 8 parallel clients, a
// cancelled stream, every error status, SIGTERM, and that the server's greedy completion equals
// `minigpt generate --temp 0` for the same prompt.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "minigpt/model/model.hpp"
#include "serve_helpers.hpp"
#include "test_data.hpp"

using json = nlohmann::json;
using minigpt::test::run;
using minigpt::test::shared_path;

namespace {

using minigpt::test::greedy_completion;
using minigpt::test::k_tool;
using minigpt::test::serve_process;
using minigpt::test::shell_quote;

const std::string k_key = "test-key-123";

#define START_SERVER(var, flags)                                     \
    serve_process var(minigpt::test::serve_model(), flags, k_key);   \
    ASSERT_GT(var.port(), 0) << "the server did not start:\n" << var.log()

// What `minigpt generate --temp 0` prints after the prompt.
std::string cli_greedy(const std::string& prompt, int n) {
    std::string out;
    EXPECT_EQ(run(k_tool + " generate -m " + minigpt::test::serve_model() + " -t 1 --temp 0 --no-stats -n " + std::to_string(n) + " -p " +
                      shell_quote(prompt) + " 2>/dev/null",
                  &out),
              0);
    EXPECT_EQ(out.substr(0, prompt.size()), prompt);
    return out.substr(prompt.size(), out.size() - prompt.size() - 1);  // generate ends with a newline
}

}  // namespace

TEST(Server, HealthModelsAndAuth) {
    START_SERVER(s, "-np 2 -c 1024");
    auto r = s.call("GET", "/health", {}, "-H 'Authorization: Bearer wrong'");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.parsed()["status"], "ok");
    r = s.call("GET", "/v1/models");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.parsed()["data"][0]["object"], "model");
    EXPECT_EQ(r.parsed()["data"][0]["meta"]["n_ctx_slot"], 512);
    // Wrong and missing keys: 401 with an OpenAI error object.
    std::string body;
    ASSERT_EQ(run("curl -s -w ' %{http_code}' -H 'Authorization: Bearer nope' " + s.url("/v1/models"), &body), 0);
    EXPECT_NE(body.find("invalid_api_key"), std::string::npos) << body;
    EXPECT_EQ(body.substr(body.size() - 3), "401");
    ASSERT_EQ(run("curl -s -w ' %{http_code}' -X POST -d '{}' " + s.url("/v1/completions"), &body), 0);
    EXPECT_EQ(body.substr(body.size() - 3), "401");
    EXPECT_EQ(s.call("GET", "/v1/nothing").status, 404);
}

TEST(Server, GreedyCompletionEqualsGenerate) {
    START_SERVER(s, "-np 2 -c 1024");
    for (const std::string prompt : {"Once upon a time", "The little dog was"}) {
        const auto r = s.post("/v1/completions", greedy_completion(prompt, 32));
        ASSERT_TRUE(r.contains("choices")) << r;
        EXPECT_EQ(r["object"], "text_completion");
        EXPECT_EQ(r["choices"][0]["text"], cli_greedy(prompt, 32)) << prompt;
        EXPECT_EQ(r["usage"]["completion_tokens"].get<int>() + r["usage"]["prompt_tokens"].get<int>(),
                  r["usage"]["total_tokens"].get<int>());
    }
}

TEST(Server, ChatStreamingNAndLogprobs) {
    START_SERVER(s, "-np 4 -c 2048");
    // Chat.
    json chat = {{"model", "m"}, {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Tell a story."}}}},
                 {"max_tokens", 20}, {"temperature", 0}};
    const auto c = s.post("/v1/chat/completions", chat);
    EXPECT_EQ(c["object"], "chat.completion");
    EXPECT_EQ(c["choices"][0]["message"]["role"], "assistant");
    EXPECT_TRUE(c["choices"][0]["message"]["content"].is_string());
    const std::string chat_text = c["choices"][0]["message"]["content"];

    // Streamed chat gives the same text in deltas, then a finish chunk and [DONE].
    chat["stream"] = true;
    auto events = s.stream("/v1/chat/completions", chat);
    ASSERT_GE(events.size(), 2u);
    EXPECT_EQ(events.back(), "[DONE]");
    std::string streamed;
    for (std::size_t i = 0; i + 1 < events.size(); ++i) {
        const auto e = json::parse(events[i]);
        EXPECT_EQ(e["object"], "chat.completion.chunk");
        const auto& d = e["choices"][0]["delta"];
        if (d.contains("content")) streamed += d["content"].get<std::string>();
    }
    EXPECT_EQ(streamed, chat_text);
    EXPECT_EQ(json::parse(events[events.size() - 2])["choices"][0]["finish_reason"], c["choices"][0]["finish_reason"]);

    // Streamed completion equals the non-streamed one.
    auto body = greedy_completion("Once upon a time", 24);
    const std::string whole = s.post("/v1/completions", body)["choices"][0]["text"];
    body["stream"] = true;
    events = s.stream("/v1/completions", body);
    streamed.clear();
    for (std::size_t i = 0; i + 1 < events.size(); ++i) streamed += json::parse(events[i])["choices"][0]["text"].get<std::string>();
    EXPECT_EQ(streamed, whole);

    // n = 3: three choices; greedy ones are identical, seeded sampled ones reproducible.
    body = greedy_completion("Once upon a time", 16);
    body["n"] = 3;
    auto r = s.post("/v1/completions", body);
    ASSERT_EQ(r["choices"].size(), 3u);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(r["choices"][i]["index"], i);
        EXPECT_EQ(r["choices"][i]["text"], whole.substr(0, r["choices"][i]["text"].get<std::string>().size()));
    }
    body["temperature"] = 1.0;
    body["seed"] = 42;
    const auto a = s.post("/v1/completions", body), b = s.post("/v1/completions", body);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(a["choices"][i]["text"], b["choices"][i]["text"]);

    // Logprobs: completions form (legacy) and chat form.
    body = greedy_completion("Once upon a time", 8);
    body["logprobs"] = 3;
    r = s.post("/v1/completions", body);
    const auto& lp = r["choices"][0]["logprobs"];
    ASSERT_EQ(lp["tokens"].size(), r["usage"]["completion_tokens"].get<std::size_t>());
    std::string joined;
    for (const auto& t : lp["tokens"]) joined += t.get<std::string>();
    EXPECT_EQ(joined, r["choices"][0]["text"]);  // token texts read as the text does
    for (std::size_t i = 0; i < lp["tokens"].size(); ++i) {
        EXPECT_LE(lp["token_logprobs"][i].get<double>(), 0.0);
        EXPECT_EQ(lp["top_logprobs"][i].size(), 3u);
        // greedy: the chosen token is the most likely alternative
        double best = -1e9;
        for (const auto& [k, v] : lp["top_logprobs"][i].items()) best = std::max(best, v.get<double>());
        EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), best, 1e-6);
    }
    chat = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 5}, {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 2}};
    r = s.post("/v1/chat/completions", chat);
    ASSERT_EQ(r["choices"][0]["logprobs"]["content"].size(), r["usage"]["completion_tokens"].get<std::size_t>());
    EXPECT_EQ(r["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 2u);
}

TEST(Server, EightParallelClients) {
    START_SERVER(s, "-np 4 -c 2048");
    const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "Lily and Ben went", "Tom had a red ball",
                                              "One day, a bird", "The sun was hot", "Mom said", "There was a big tree"};
    std::vector<std::string> sequential;
    for (const auto& p : prompts) sequential.push_back(s.post("/v1/completions", greedy_completion(p, 24))["choices"][0]["text"]);
    std::vector<std::future<json>> parallel;
    for (const auto& p : prompts)
        parallel.push_back(std::async(std::launch::async, [&s, p] { return s.post("/v1/completions", greedy_completion(p, 24)); }));
    for (std::size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(parallel[i].get()["choices"][0]["text"], sequential[i]) << prompts[i];
    EXPECT_EQ(s.metric("minigpt_requests_running"), 0);
    EXPECT_GE(s.metric("minigpt_requests_total"), 16);
    EXPECT_GT(s.metric("minigpt_tokens_generated_total"), 0);
    EXPECT_GT(s.metric("minigpt_kv_cache_bytes"), 0);
}

// GET /metrics reports the paged KV cache: blocks (total, used, shared copy-on-write) and their
// bytes, checked against bytes computed here from the model's shape (K and V of every layer, F32).
TEST(Server, MetricsReportPagedKvBlocks) {
    START_SERVER(s, "-np 4 -c 1024");
    const auto model = minigpt::model::load(minigpt::test::serve_model());
    const auto& c = model->config();
    const double block_size = s.metric("minigpt_kv_cache_block_size");
    ASSERT_GT(block_size, 0);
    const double bytes_per_block = 2.0 * static_cast<double>(c.n_layer * c.kv_dim()) * 4.0 * block_size;
    const double blocks = s.metric("minigpt_kv_cache_blocks");
    EXPECT_GE(blocks * block_size, 1024);
    EXPECT_EQ(s.metric("minigpt_kv_cache_bytes"), blocks * bytes_per_block);
    EXPECT_EQ(s.metric("minigpt_kv_cache_blocks_used"), 0);
    EXPECT_EQ(s.metric("minigpt_kv_cache_blocks_shared"), 0);
    EXPECT_EQ(s.metric("minigpt_kv_cache_bytes_used"), 0);
    // Four choices of one prompt several blocks long: the prompt's full blocks are stored once,
    // shared by the four sequences, and stay cached (for prefix reuse) after the request.
    json body = greedy_completion("Once upon a time there was a little girl named Lily. She liked to play in the park with her dog "
                           "Max and her friend Ben every day, and they were very happy.", 4);
    body["n"] = 4;
    body["temperature"] = 1.0;
    body["seed"] = 3;
    const auto r = s.post("/v1/completions", body);
    ASSERT_EQ(r["choices"].size(), 4u);
    const double n_prompt = r["usage"]["prompt_tokens"].get<double>();
    ASSERT_GE(n_prompt, 2 * block_size);
    const double used = s.metric("minigpt_kv_cache_blocks_used"), shared = s.metric("minigpt_kv_cache_blocks_shared");
    EXPECT_GE(shared, std::floor(n_prompt / block_size));
    EXPECT_LE(shared, used);
    const double own_copies = 4 * std::ceil((n_prompt + 4) / block_size);  // four unshared sequences
    EXPECT_LT(used, own_copies);
    EXPECT_GE(used, std::ceil(n_prompt / block_size));
    EXPECT_EQ(s.metric("minigpt_kv_cache_bytes_used"), used * bytes_per_block);
    EXPECT_EQ(s.metric("minigpt_kv_cache_bytes_shared"), shared * bytes_per_block);
    EXPECT_EQ(s.metric("minigpt_kv_cache_blocks"), blocks);
}

TEST(Server, CancelledStreamFreesItsSlot) {
    // One slot of 8192 positions: the stream below would run for many seconds if nobody stopped it.
    START_SERVER(s, "-np 1 -c 8192");
    json body = {{"prompt", "Once upon a time"}, {"max_tokens", -1}, {"ignore_eos", true}, {"stream", true}, {"temperature", 1.0}};
    std::string ignored;
    run("curl -s -N --max-time 0.3 -H " + shell_quote("Authorization: Bearer " + k_key) + " -H 'Content-Type: application/json' -d " +
            shell_quote(body.dump()) + " " + s.url("/v1/completions") + " >/dev/null",
        &ignored);
    // The client hung up: its request is cancelled and the slot is free within moments.
    const auto t0 = std::chrono::steady_clock::now();
    while (s.metric("minigpt_requests_running") != 0 &&
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 3.0)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(s.metric("minigpt_requests_running"), 0);
    EXPECT_EQ(s.metric("minigpt_requests_cancelled_total"), 1);
    EXPECT_LT(s.metric("minigpt_tokens_generated_total"), 7000);  // it did not run to the end of its context
    const auto r = s.post("/v1/completions", greedy_completion("The little dog", 8));
    EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
}

TEST(Server, ErrorStatuses) {
    START_SERVER(s, "-np 1 -c 128 --max-queue 1 --max-body 4096");
    // 400: malformed JSON, wrong field types, prompt longer than a slot.
    auto r = s.call("POST", "/v1/completions", "{\"prompt\": \"x\",");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.parsed()["error"]["type"], "invalid_request_error");
    r = s.call("POST", "/v1/completions", R"({"prompt": "x", "temperature": "hot"})");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.parsed()["error"]["param"], "temperature");
    r = s.call("POST", "/v1/chat/completions", R"({"messages": []})");
    EXPECT_EQ(r.status, 400);
    std::string long_prompt;
    for (int i = 0; i < 200; ++i) long_prompt += "Once upon a time ";
    r = s.call("POST", "/v1/completions", json{{"prompt", long_prompt.substr(0, 3000)}}.dump());
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.parsed()["error"]["code"], "context_length_exceeded") << r.body;
    // 413: body above --max-body.
    r = s.call("POST", "/v1/completions", json{{"prompt", std::string(8000, 'a')}}.dump());
    EXPECT_EQ(r.status, 413);
    EXPECT_EQ(r.parsed()["error"]["type"], "invalid_request_error");
    // 503: one slot and a queue of one; ten simultaneous long requests cannot all be taken.
    std::vector<std::future<int>> statuses;
    for (int i = 0; i < 10; ++i)
        statuses.push_back(std::async(std::launch::async, [&s] {
            const auto x = s.call("POST", "/v1/completions",
                                  json{{"prompt", "Once"}, {"max_tokens", 100}, {"ignore_eos", true}}.dump());
            if (x.status == 503) {
                EXPECT_EQ(json::parse(x.body)["error"]["code"], "queue_full");
            }
            return x.status;
        }));
    int n_ok = 0, n_busy = 0;
    for (auto& f : statuses) {
        const int st = f.get();
        n_ok += st == 200;
        n_busy += st == 503;
    }
    EXPECT_GE(n_ok, 2);
    EXPECT_GE(n_busy, 1);
    EXPECT_EQ(n_ok + n_busy, 10);
    EXPECT_GE(s.metric("minigpt_requests_rejected_total"), 1);
}

TEST(Server, SigtermStopsCleanly) {
    serve_process s(minigpt::test::serve_model(), "-np 1 -c 8192", k_key);
    ASSERT_GT(s.port(), 0) << s.log();
    // A stream in flight when the signal arrives ends with its final chunk.
    auto stream = std::async(std::launch::async, [&s] {
        return s.call("POST", "/v1/completions",
                      json{{"prompt", "Once"}, {"max_tokens", -1}, {"ignore_eos", true}, {"stream", true}}.dump(), "-N");
    });
    for (int i = 0; i < 200 && s.metric("minigpt_requests_running") < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    ASSERT_EQ(s.metric("minigpt_requests_running"), 1) << "the stream did not start";
    ASSERT_EQ(::kill(s.pid(), SIGTERM), 0);
    int status = 0;
    pid_t done = 0;
    for (int i = 0; i < 100 && done == 0; ++i) {
        done = ::waitpid(s.pid(), &status, WNOHANG);
        if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_EQ(done, s.pid()) << "still running 5 s after SIGTERM";
    s.forget();
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    const auto r = stream.get();
    EXPECT_NE(r.body.find("data: [DONE]"), std::string::npos);
    EXPECT_NE(s.log().find("stopped"), std::string::npos);
}

TEST(Server, OfficialOpenAINodeClient) {
    std::string out;
    const std::filesystem::path dir = minigpt::test::openai_npm_dir(&out);
    if (dir.empty()) GTEST_SKIP() << "npm install openai failed (offline?): " << out;
    START_SERVER(s, "-np 4 -c 2048");
    const std::string script = R"JS(
const OpenAI = require('openai');
(async () => {
  const base = process.argv[2];
  const client = new OpenAI({ baseURL: base, apiKey: process.argv[3] });
  const out = {};
  const c = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 16, temperature: 0 });
  out.completion = c.choices[0].text;
  const ch = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'Hello' }],
                                                    max_tokens: 12, temperature: 0, n: 2 });
  out.chat = ch.choices.map(x => x.message.content);
  const st = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'Hello' }],
                                                    max_tokens: 12, temperature: 0, stream: true });
  out.stream = '';
  for await (const chunk of st) out.stream += chunk.choices[0]?.delta?.content || '';
  const cs = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 16, temperature: 0, stream: true });
  out.completion_stream = '';
  for await (const chunk of cs) out.completion_stream += chunk.choices[0]?.text || '';
  const models = await client.models.list();
  out.models = models.data.map(m => m.id);
  try {
    await new OpenAI({ baseURL: base, apiKey: 'wrong' }).completions.create({ model: 'm', prompt: 'x', max_tokens: 1 });
    out.auth = 'no error';
  } catch (e) { out.auth = e.status; }
  try {
    await client.completions.create({ model: 'm', prompt: 'x', max_tokens: 1, temperature: 9 });
    out.bad = 'no error';
  } catch (e) { out.bad = e.status; }
  const lp = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4,
                                                   temperature: 0, logprobs: true, top_logprobs: 2 });
  out.logprobs = lp.choices[0].logprobs.content.length;
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
)JS";
    std::ofstream(dir / "client.js") << script;
    ASSERT_EQ(run("cd " + dir.string() + " && timeout 60 node client.js " + s.url("/v1") + " " + k_key + " 2>&1", &out), 0) << out;
    const auto r = json::parse(out);
    EXPECT_EQ(r["completion"], cli_greedy("Once upon a time", 16));
    EXPECT_EQ(r["completion_stream"], r["completion"]);
    ASSERT_EQ(r["chat"].size(), 2u);
    EXPECT_EQ(r["chat"][0], r["chat"][1]);
    EXPECT_EQ(r["stream"], r["chat"][0]);
    EXPECT_EQ(r["auth"], 401);
    EXPECT_EQ(r["bad"], 400);
    EXPECT_GE(r["logprobs"].get<int>(), 1);
    EXPECT_EQ(r["models"].size(), 1u);
}
