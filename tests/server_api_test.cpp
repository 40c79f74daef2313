// The OpenAI-compatible server's request layer (serve/openai_api.hpp) and an in-process
// serve::http_server driven by parallel httplib clients, on a tiny random-weight model made in
// memory: no `minigpt` binary and no ../shared data, so scripts/test-sanitizers runs this file
// under ASan+UBSan and under ThreadSanitizer (server_test.cpp drives the real `minigpt serve`).
// References: what OpenAI's API documents for each field, and for the generated text the
// one-sequence path (minigpt::generate on its own context), which the engine must equal when greedy.
#include <gtest/gtest.h>

#include <cmath>
#include <future>
#include <thread>

#include "minigpt/generate/generation.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/serve/http_server.hpp"
#include "minigpt/text/vocab_gguf.hpp"

using namespace minigpt;
using serve::json;

namespace {

// synth's "tiny" llama (n_embd 64, 2 layers, vocab 512 with the synthetic byte-level vocabulary).
const llm& tiny_llm() {
    static const llm lm = [] {
        io::gguf_writer w;
        write_vocab(w, synthetic_vocab(512));
        synthesize(w, find_synth_preset(architecture::llama, "tiny"), dtype::f32, 5, 0, 1);
        auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
        const auto f = std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(std::move(bytes), "tiny.gguf"));
        llm r;
        r.weights = model::from_gguf(f);
        r.vocab = std::make_shared<const tokenizer>(tokenizer::from_gguf(*f));
        return r;
    }();
    return lm;
}

engine& shared_engine() {
    static engine e(tiny_llm(), {.n_slots = 2, .n_ctx_slot = 128, .n_threads = 1});
    return e;
}

const chat_template& default_template() {
    static const chat_template t = serve::server_options{}.tmpl;
    return t;
}

serve::api_request parse(const std::string& body, bool chat = false) {
    return serve::parse_request_body(body, shared_engine(), default_template(), chat);
}

// The api_error a body gets (status 0 and an empty param if it was accepted).
serve::api_error rejection(const std::string& body, bool chat = false) {
    try {
        parse(body, chat);
    } catch (const serve::api_error& e) {
        return e;
    }
    return serve::api_error(0, "", "accepted");
}

}  // namespace

TEST(OpenAIApi, CompletionFieldsMapToTheEngineRequest) {
    const auto r = parse(R"({"model": "m", "prompt": "Hello", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": 40,
        "min_p": 0.05, "typical_p": 0.8, "repeat_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": -0.25,
        "seed": 42, "stop": ["\n", "END"], "n": 3, "logprobs": 2, "logit_bias": {"5": -100, "6": 2.5}, "ignore_eos": true})");
    EXPECT_FALSE(r.chat);
    EXPECT_EQ(r.model, "m");
    EXPECT_EQ(r.n, 3);
    ASSERT_EQ(r.prompts.size(), 1u);
    EXPECT_EQ(r.prompts[0], tiny_llm().vocab->encode("Hello", tiny_llm().vocab->add_bos_default()));
    const auto& p = r.params;
    EXPECT_EQ(p.max_tokens, 7);
    EXPECT_FLOAT_EQ(p.sampling.temperature, 0.5f);
    EXPECT_FLOAT_EQ(p.sampling.top_p, 0.9f);
    EXPECT_EQ(p.sampling.top_k, 40);
    EXPECT_FLOAT_EQ(p.sampling.min_p, 0.05f);
    EXPECT_FLOAT_EQ(p.sampling.typical_p, 0.8f);
    EXPECT_FLOAT_EQ(p.sampling.repeat_penalty, 1.1f);
    EXPECT_FLOAT_EQ(p.sampling.presence_penalty, 0.5f);
    EXPECT_FLOAT_EQ(p.sampling.frequency_penalty, -0.25f);
    EXPECT_EQ(p.sampling.seed, 42u);
    EXPECT_EQ(p.stop, (std::vector<std::string>{"\n", "END"}));
    EXPECT_TRUE(p.ignore_eos);
    EXPECT_TRUE(r.want_logprobs);
    EXPECT_EQ(p.n_logprobs, 2);
    ASSERT_EQ(p.sampling.logit_bias.size(), 2u);
    EXPECT_EQ(p.sampling.logit_bias[0].first, 5);
    EXPECT_TRUE(std::isinf(p.sampling.logit_bias[0].second) && p.sampling.logit_bias[0].second < 0);  // -100 bans (OpenAI)
    EXPECT_FLOAT_EQ(p.sampling.logit_bias[1].second, 2.5f);
    // OpenAI's defaults: 16 tokens for completions, temperature 1, no seed.
    const auto d = parse(R"({"prompt": "x"})");
    EXPECT_EQ(d.params.max_tokens, 16);
    EXPECT_FLOAT_EQ(d.params.sampling.temperature, 1.0f);
    EXPECT_EQ(d.params.sampling.seed, k_random_seed);
}

TEST(OpenAIApi, PromptFormsAndChatMessages) {
    const auto& tok = *tiny_llm().vocab;
    const auto ids = [&](const std::string& s) { return tok.encode(s, tok.add_bos_default()); };
    EXPECT_EQ(parse(R"({"prompt": [1, 70, 80]})").prompts, (std::vector<std::vector<std::int32_t>>{{1, 70, 80}}));
    EXPECT_EQ(parse(R"({"prompt": ["ab", "c"]})").prompts, (std::vector<std::vector<std::int32_t>>{ids("ab"), ids("c")}));
    EXPECT_EQ(parse(R"({"prompt": [[1, 2], [3]]})").prompts, (std::vector<std::vector<std::int32_t>>{{1, 2}, {3}}));
    // Chat: string content and text parts render as the template renders the same messages.
    const std::vector<chat_message> messages = {{"system", "Be brief."}, {"user", "Hello"}};
    const auto want = tok.encode(default_template().apply(messages), tok.add_bos_default(), true);
    const auto a = parse(R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]})", true);
    const auto b = parse(R"({"messages": [{"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
                                          {"role": "user", "content": "Hello"}]})", true);
    ASSERT_EQ(a.prompts.size(), 1u);
    EXPECT_EQ(a.prompts[0], want);
    EXPECT_EQ(b.prompts, a.prompts);
    EXPECT_EQ(a.params.max_tokens, -1);  // chat: until the end of the turn
}

TEST(OpenAIApi, BadFieldsAre400NamingTheField) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"prompt": "x", "temperature": "hot"})", "temperature"},
        {R"({"prompt": "x", "temperature": 3})", "temperature"},
        {R"({"prompt": "x", "n": 0})", "n"},
        {R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens"},
        {R"({"prompt": "x", "stop": [""]})", "stop"},
        {R"({"prompt": "x", "stop": 5})", "stop"},
        {R"({"prompt": "x", "logit_bias": {"x": 1}})", "logit_bias"},
        {R"({"prompt": "x", "logit_bias": {"512": 1}})", "logit_bias"},
        {R"({"prompt": [1, "a"]})", "prompt"},
        {R"({"prompt": [512]})", "prompt"},
        {R"({"prompt": "x", "echo": true})", "echo"},
        {R"({"prompt": "x", "logprobs": 21})", "logprobs"},
        {R"({})", "prompt"},
    };
    for (const auto& [body, param] : cases) {
        const auto e = rejection(body);
        EXPECT_EQ(e.status(), 400) << body;
        EXPECT_EQ(e.body()["error"]["param"], param) << body;
        EXPECT_EQ(e.body()["error"]["type"], "invalid_request_error") << body;
    }
    EXPECT_EQ(rejection(R"({"messages": []})", true).body()["error"]["param"], "messages");
    EXPECT_EQ(rejection(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", true).body()["error"]["param"],
              "top_logprobs");
    EXPECT_EQ(rejection(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", true).body()["error"]["param"],
              "messages");
    // A prompt longer than a slot (128 positions): context_length_exceeded.
    const auto e = rejection(json{{"prompt", std::string(200, 'a')}}.dump());
    EXPECT_EQ(e.body()["error"]["code"], "context_length_exceeded");
}

// Found writing fuzz_server_request (seeds regress-integer-wraps, regress-float-beyond-float):
// nlohmann's get<T> narrowed silently, so n = 2^32 + 1 ran as n = 1 and max_tokens = 2^32 + 15 as 15;
// a double beyond a float's range converted to float (undefined behaviour, inf on x86), so
// typical_p = 1e300 was accepted as infinity.
TEST(OpenAIApi, NumbersBeyondTheirFieldAre400) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"prompt": "x", "n": 4294967297})", "n"},
        {R"({"prompt": "x", "max_tokens": 4294967311})", "max_tokens"},
        {R"({"prompt": "x", "top_k": 2147483648})", "top_k"},
        {R"({"prompt": "x", "top_k": -2147483649})", "top_k"},
        {R"({"prompt": "x", "seed": 18446744073709551615})", "seed"},
        {R"({"prompt": "x", "typical_p": 1e300})", "typical_p"},
        {R"({"prompt": "x", "temperature": -1e39})", "temperature"},
    };
    for (const auto& [body, param] : cases) {
        const auto e = rejection(body);
        EXPECT_EQ(e.status(), 400) << body;
        EXPECT_EQ(e.body()["error"]["param"], param) << body;
    }
    // The limits themselves still fit.
    EXPECT_EQ(parse(R"({"prompt": "x", "top_k": 2147483647})").params.sampling.top_k, 2147483647);
    EXPECT_EQ(parse(R"({"prompt": "x", "seed": 9223372036854775807})").params.sampling.seed, 9223372036854775807ull);
}

// Found writing fuzz_server_request (seed regress-content-type-not-string): a content part whose
// "type" is not a string made nlohmann's value("type", "") throw type_error out of parse_request
// (the server answered 500).
TEST(OpenAIApi, ContentPartTypeThatIsNotAStringIs400) {
    for (const char* part : {R"({"type": 5, "text": "x"})", R"({"type": null, "text": "x"})", R"({"type": ["text"], "text": "x"})"}) {
        const std::string body = std::string(R"({"messages": [{"role": "user", "content": [)") + part + "]}]}";
        const auto e = rejection(body, true);
        EXPECT_EQ(e.status(), 400) << body;
        EXPECT_EQ(e.body()["error"]["param"], "messages") << body;
    }
}

// A number beyond a double's range is nlohmann's out_of_range, not a parse_error: the server caught
// only parse_error and answered 500.
TEST(OpenAIApi, NumberBeyondADoubleIsMalformedJson) {
    const auto e = rejection(R"({"prompt": "x", "max_tokens": 1e400})");
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("malformed JSON"), std::string::npos) << e.what();
}

namespace {

// One in-process server on a free loopback port, serving on its own thread until destroyed.
class local_server {
public:
    explicit local_server(engine& e) : server_(e, options()) {
        if (!server_.bind()) throw std::runtime_error("cannot bind a loopback port");
        thread_ = std::thread([this] { server_.serve(); });
    }
    ~local_server() {
        server_.stop();
        thread_.join();
    }
    int port() const { return server_.port(); }
    httplib::Client client() const {
        httplib::Client c("127.0.0.1", port());
        c.set_read_timeout(120, 0);
        c.set_bearer_token_auth("k");
        return c;
    }

private:
    static serve::server_options options() {
        serve::server_options o;
        o.port = 0;
        o.api_key = "k";
        o.n_http_threads = 8;
        return o;
    }
    serve::http_server server_;
    std::thread thread_;
};

json completion_body(const std::string& prompt, int n_tokens, bool stream = false) {
    return {{"prompt", prompt}, {"max_tokens", n_tokens}, {"temperature", 0}, {"stream", stream}};
}

// The text of each choice of a streamed completion's `data:` events, checking they end with [DONE].
std::vector<std::string> streamed_texts(const std::string& body) {
    std::vector<std::string> texts;
    std::string last;
    std::size_t at = 0;
    while ((at = body.find("data: ", at)) != std::string::npos) {
        const auto end = body.find("\n\n", at);
        last = body.substr(at + 6, end - at - 6);
        at = end;
        if (last == "[DONE]") continue;
        const json event = json::parse(last);
        const json& choice = event["choices"][0];
        const auto index = choice["index"].get<std::size_t>();
        if (texts.size() <= index) texts.resize(index + 1);
        texts[index] += choice["text"].get<std::string>();
    }
    EXPECT_EQ(last, "[DONE]");
    return texts;
}

}  // namespace

// Eight clients at once, each a completion, a streamed completion of two choices and a malformed
// request, on two slots: every answer equals the one-sequence greedy generation of its prompt, every error is a 400.
// Run under ThreadSanitizer by scripts/test-sanitizers (httplib's threads, the engine thread, the
// streaming hand-over between them).
TEST(InProcessServer, ParallelClientsGetTheirOwnAnswers) {
    local_server s(shared_engine());
    const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "Lily and Ben", "Tom had a red ball",
                                              "One day, a bird", "The sun was hot", "Mom said", "There was a big tree"};
    constexpr int k_tokens = 12;
    std::vector<std::string> expected;
    for (const auto& p : prompts) {
        context ctx(tiny_llm().weights, {.n_ctx = 128, .n_threads = 1});
        generation_params gp;
        gp.max_tokens = k_tokens;
        gp.sampling.temperature = 0;
        expected.push_back(generate(tiny_llm(), ctx, p, gp).text);
    }
    struct answers {
        int status = 0, stream_status = 0, bad_status = 0;
        std::string text, bad_body;
        std::vector<std::string> streamed;
    };
    std::vector<std::future<answers>> clients;
    for (const auto& p : prompts)
        clients.push_back(std::async(std::launch::async, [&s, p] {
            answers a;
            auto c = s.client();
            if (auto r = c.Post("/v1/completions", completion_body(p, k_tokens).dump(), "application/json")) {
                a.status = r->status;
                if (r->status == 200) a.text = json::parse(r->body)["choices"][0]["text"];
            }
            json stream = completion_body(p, k_tokens, true);
            stream["n"] = 2;  // two choices streamed at once, submitted while the first may already run
            if (auto r = c.Post("/v1/completions", stream.dump(), "application/json")) {
                a.stream_status = r->status;
                if (r->status == 200) a.streamed = streamed_texts(r->body);
            }
            if (auto r = c.Post("/v1/completions", R"({"prompt": "x", "max_tokens": 1e400})", "application/json")) {
                a.bad_status = r->status;
                a.bad_body = r->body;
            }
            return a;
        }));
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        const answers a = clients[i].get();
        EXPECT_EQ(a.status, 200) << prompts[i];
        EXPECT_EQ(a.stream_status, 200) << prompts[i];
        EXPECT_EQ(a.text, expected[i]) << prompts[i];
        EXPECT_EQ(a.streamed, (std::vector<std::string>{expected[i], expected[i]})) << prompts[i];
        EXPECT_EQ(a.bad_status, 400) << a.bad_body;
    }
    EXPECT_EQ(shared_engine().stats().running, 0u);
}

// Found writing fuzz_server_request (seed regress-malformed-utf8-in-error): a body with ill-formed
// UTF-8 got a parse error whose message quotes the bytes read; nlohmann's dump() threw type_error 316
// on it and the client got a 500. Now a 400 whose body is valid JSON (the bytes written as U+FFFD,
// as llama.cpp's server writes them).
TEST(InProcessServer, IllFormedUtf8BodyIs400WithValidJson) {
    local_server s(shared_engine());
    auto c = s.client();
    for (const std::string& body : {std::string("{\"prompt\": \"\xff\xfe\"}"), std::string("{\"prompt\": \"ok\", \xc3")}) {
        const auto r = c.Post("/v1/completions", body, "application/json");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 400) << r->body;
        ASSERT_TRUE(json::accept(r->body)) << r->body;
        EXPECT_EQ(json::parse(r->body)["error"]["type"], "invalid_request_error");
    }
}
