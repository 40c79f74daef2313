// libFuzzer harness: an HTTP request body of the OpenAI-compatible server, without HTTP. Byte 0 odd:
// /v1/chat/completions, even: /v1/completions; the rest is the body. What http_server does with a
// body, in the same order: serve::parse_request_body (JSON, then every field, into the engine's
// request) on an engine over the fixed model (fixed_model.hpp, slots of 64 positions); a rejection
// must be an api_error whose body writes as valid JSON. An accepted request is submitted to the
// engine, each choice capped at 2 generated tokens, streamed chunks (with log-probabilities when
// asked) and the whole response are written as the server writes them, and must read back as JSON.
// Checked: whatever parse_request accepts, engine::submit accepts too (the server would otherwise
// answer 503 or 500 to a client's mistake).
// Seeds: corpus/server_request (text: a selector letter, then a JSON body).
#include "fixed_model.hpp"
#include "fuzz_common.hpp"
#include "minigpt/generate/engine.hpp"
#include "minigpt/serve/openai_api.hpp"

using namespace minigpt;

namespace {

// As the server writes a body or event: it must read back as JSON.
void write_back(const serve::json& j, const char* what) {
    const std::string text = serve::json_text(j);
    fuzz::fuzz_check(serve::json::accept(text), what);
}

}  // namespace

MINIGPT_FUZZ_TARGET(server_request) {
    if (size < 1) return 0;
    static engine e(fuzz::fixed_llm(), {.n_slots = 1, .n_ctx_slot = 64, .token_budget = 64, .n_threads = 1});
    static const chat_template tmpl = chat_template::custom(custom_chat_format{});  // http_server's default
    const bool chat = (data[0] & 1) != 0;
    const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
    serve::api_request r;
    bool parsed = false;
    try {
        r = serve::parse_request_body(body, e, tmpl, chat);
        parsed = true;
    } catch (const serve::api_error& ex) {
        write_back(ex.body(), "an error body is not valid JSON");
    } catch (const minigpt::error& ex) {  // the server answers these with bad_request(what)
        write_back(serve::bad_request(ex.what()).body(), "an error body is not valid JSON");
    } catch (const std::exception& ex) {
        std::fprintf(stderr, "FUZZ FINDING (server request): %s escaped instead of minigpt::error: %s\n", typeid(ex).name(), ex.what());
        std::abort();
    }
    if (!parsed) return 0;
    const auto& tok = *e.model().vocab;
    std::vector<generation_output> outputs;
    bool failed = false;
    for (const auto& prompt : r.prompts)
        for (int k = 0; k < r.n; ++k) {
            engine_request er{prompt, r.params, {}, {}};
            if (er.params.max_tokens < 0 || er.params.max_tokens > 2) er.params.max_tokens = 2;
            if (r.stream)
                er.on_token = [&r, &tok, k](const token_event& ev) {
                    const bool has_lp = r.want_logprobs && ev.logprobs;
                    const std::string text(ev.text);
                    const serve::json lp = has_lp ? serve::logprobs_json(tok, std::span(ev.logprobs, 1), r.chat) : serve::json(nullptr);
                    write_back(serve::chunk_json(r, "id", 0, "m", static_cast<std::size_t>(k), &text, lp, nullptr, true),
                               "a streamed chunk is not valid JSON");
                    return true;
                };
            request_handle h;
            try {
                h = e.submit(std::move(er));
            } catch (const std::exception& ex) {
                std::fprintf(stderr, "FUZZ FINDING: parse_request accepted a request that engine::submit refuses: %s\n", ex.what());
                std::abort();
            }
            bool finished = false;  // a generation may fail with minigpt::error (e.g. every token banned by logit_bias)
            fuzz::guarded("server generation", [&] {
                outputs.push_back(h.wait());
                finished = true;
            });
            failed = failed || !finished;
        }
    if (!failed) write_back(serve::response_json(r, tok, outputs, "id", 0, "m"), "a response is not valid JSON");
    return 0;
}
