// The OpenAI API's JSON, without any HTTP: request bodies of /v1/completions and
// /v1/chat/completions turned into engine requests, and results turned into response
// objects, streaming chunks and errors shaped as OpenAI's (and llama.cpp's server's) are.
//
// Supported request fields: model (informational), prompt (string, array of strings, or array
// of token ids) / messages, max_tokens (chat also max_completion_tokens), temperature, top_p,
// top_k, min_p, typical_p, repeat_penalty, presence_penalty, frequency_penalty, seed, stop
// (string or array), n, stream (with stream_options.include_usage), logprobs (completions: 0..20 alternatives; chat: true plus
// top_logprobs 0..20), logit_bias, ignore_eos. A field with a wrong type or value is a 400 naming
// it; echo and best_of (not implemented) are rejected rather than ignored.
// Log-probabilities are the model's distribution before the sampler chain (generate/logprobs.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/engine.hpp"
#include "minigpt/text/chat_template.hpp"

namespace minigpt::serve {

using json = nlohmann::json;

// An error with the HTTP status and OpenAI error object it maps to.
class api_error : public error {
public:
    api_error(int status, std::string type, const std::string& message, std::string param = {}, std::string code = {})
        : error(message), status_(status), type_(std::move(type)), param_(std::move(param)), code_(std::move(code)) {}
    int status() const noexcept { return status_; }
    json body() const {
        json e = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
        if (!param_.empty()) e["param"] = param_;
        if (!code_.empty()) e["code"] = code_;
        return json{{"error", e}};
    }

private:
    int status_;
    std::string type_, param_, code_;
};

inline api_error bad_request(const std::string& message, const std::string& param = {}, const std::string& code = {}) {
    return api_error(400, "invalid_request_error", message, param, code);
}

// One parsed request: prompts (each run n times), their generation parameters and the output form.
struct api_request {
    bool chat = false;
    bool stream = false;
    int n = 1;
    std::vector<std::vector<std::int32_t>> prompts;  // (prompts, tokens)
    generation_params params;
    bool want_logprobs = false;
    bool stream_usage = false;  // stream_options.include_usage: a last chunk with the token counts
    std::string model;
    // The LoRA adapters the request runs with, as "FILE@SCALE" (set by the server from its "lora"
    // field): part of the completion-cache key, so one adapter's answer is never served for another.
    std::vector<std::string> adapter_ids;
};

namespace detail {

template <class T>
T field(const json& body, const char* name, T fallback) {
    const auto it = body.find(name);
    if (it == body.end() || it->is_null()) return fallback;
    try {
        if constexpr (std::is_same_v<T, bool>) {
            if (!it->is_boolean()) throw json::type_error::create(302, "not a boolean", nullptr);
        } else if constexpr (std::is_arithmetic_v<T>) {
            if (!it->is_number()) throw json::type_error::create(302, "not a number", nullptr);
            // nlohmann's get<T> narrows silently (4294967297 as an int is 1) or, from a double beyond
            // a float's range, is undefined behaviour: values that do not fit T are refused here.
            if constexpr (std::is_integral_v<T>) {
                if (!it->is_number_integer()) throw json::type_error::create(302, "not an integer", nullptr);
                const bool fits = it->is_number_unsigned()
                                      ? it->template get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())
                                      : it->template get<std::int64_t>() >= static_cast<std::int64_t>(std::numeric_limits<T>::min()) &&
                                            it->template get<std::int64_t>() <= static_cast<std::int64_t>(std::numeric_limits<T>::max());
                if (!fits) throw bad_request(std::string("'") + name + "' is " + it->dump() + ", out of range", name);
            } else {
                if (!(std::fabs(it->template get<double>()) <= static_cast<double>(std::numeric_limits<T>::max())))
                    throw bad_request(std::string("'") + name + "' is " + it->dump() + ", out of range", name);
            }
        } else {
            if (!it->is_string()) throw json::type_error::create(302, "not a string", nullptr);
        }
        return it->get<T>();
    } catch (const json::exception&) {
        throw bad_request(std::string("'") + name + "' has the wrong type (" + it->type_name() + ")", name);
    }
}

inline void in_range(double v, double lo, double hi, const char* name) {
    if (!(v >= lo && v <= hi))
        throw bad_request(std::string("'") + name + "' is " + std::to_string(v) + ", outside [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "]", name);
}

inline std::vector<std::int32_t> token_array(const json& a, const engine& e, const char* name) {
    std::vector<std::int32_t> ids;
    const auto n_vocab = e.model().weights->config().n_vocab;
    for (const auto& v : a) {
        if (!v.is_number_integer()) throw bad_request(std::string("'") + name + "' mixes token ids with other values", name);
        const auto id = v.get<std::int64_t>();
        if (id < 0 || id >= n_vocab) throw bad_request("token id " + std::to_string(id) + " in '" + name + "' is out of range", name);
        ids.push_back(static_cast<std::int32_t>(id));
    }
    return ids;
}

}  // namespace detail

// Parses a /v1/completions (chat = false) or /v1/chat/completions body. `tmpl` renders messages.
inline api_request parse_request(const json& body, const engine& e, const chat_template& tmpl, bool chat) {
    using detail::field;
    if (!body.is_object()) throw bad_request("the request body must be a JSON object");
    api_request r;
    r.chat = chat;
    r.model = field<std::string>(body, "model", "");
    r.stream = field<bool>(body, "stream", false);
    if (const auto so = body.find("stream_options"); so != body.end() && !so->is_null()) {
        if (!so->is_object()) throw bad_request("'stream_options' must be an object", "stream_options");
        r.stream_usage = field<bool>(*so, "include_usage", false);
    }
    r.n = field<int>(body, "n", 1);
    detail::in_range(r.n, 1, 16, "n");
    if (field<bool>(body, "echo", false)) throw bad_request("'echo' is not supported", "echo");
    if (body.contains("best_of") && !body["best_of"].is_null() && field<int>(body, "best_of", 1) != r.n)
        throw bad_request("'best_of' other than n is not supported", "best_of");

    auto& gp = r.params;
    gp.max_tokens = field<std::int32_t>(body, "max_tokens", chat ? -1 : 16);
    if (chat) gp.max_tokens = field<std::int32_t>(body, "max_completion_tokens", gp.max_tokens);
    if (gp.max_tokens < -1) throw bad_request("'max_tokens' must be positive", "max_tokens");
    auto& sp = gp.sampling;
    sp = sampling_params{};
    sp.temperature = field<float>(body, "temperature", 1.0f);
    detail::in_range(sp.temperature, 0, 2, "temperature");
    sp.top_p = field<float>(body, "top_p", 1.0f);
    detail::in_range(sp.top_p, 0, 1, "top_p");
    sp.top_k = field<std::int32_t>(body, "top_k", 0);
    sp.min_p = field<float>(body, "min_p", 0.0f);
    detail::in_range(sp.min_p, 0, 1, "min_p");
    sp.typical_p = field<float>(body, "typical_p", 1.0f);
    sp.repeat_penalty = field<float>(body, "repeat_penalty", 1.0f);
    detail::in_range(sp.repeat_penalty, 0.01, 100, "repeat_penalty");
    sp.presence_penalty = field<float>(body, "presence_penalty", 0.0f);
    detail::in_range(sp.presence_penalty, -2, 2, "presence_penalty");
    sp.frequency_penalty = field<float>(body, "frequency_penalty", 0.0f);
    detail::in_range(sp.frequency_penalty, -2, 2, "frequency_penalty");
    const auto seed = field<std::int64_t>(body, "seed", -1);
    sp.seed = seed < 0 ? k_random_seed : static_cast<std::uint64_t>(seed);
    gp.ignore_eos = field<bool>(body, "ignore_eos", false);
    if (const auto it = body.find("logit_bias"); it != body.end() && !it->is_null()) {
        if (!it->is_object()) throw bad_request("'logit_bias' must map token ids to biases", "logit_bias");
        for (const auto& [key, value] : it->items()) {
            std::size_t used = 0;
            long long id = -1;
            try { id = std::stoll(key, &used); } catch (const std::exception&) { used = 0; }
            if (used != key.size() || id < 0 || id >= e.model().weights->config().n_vocab)
                throw bad_request("'logit_bias' key '" + key + "' is not a token id", "logit_bias");
            if (!value.is_number()) throw bad_request("'logit_bias' value for " + key + " is not a number", "logit_bias");
            const double b = value.get<double>();
            detail::in_range(b, -100, 100, "logit_bias");
            // OpenAI: -100 bans the token in effect; make it exact.
            sp.logit_bias.push_back({static_cast<std::int32_t>(id), b <= -100 ? -INFINITY : static_cast<float>(b)});
        }
    }
    if (const auto it = body.find("stop"); it != body.end() && !it->is_null()) {
        if (it->is_string()) gp.stop.push_back(it->get<std::string>());
        else if (it->is_array()) {
            for (const auto& s : *it) {
                if (!s.is_string()) throw bad_request("'stop' must be a string or an array of strings", "stop");
                gp.stop.push_back(s.get<std::string>());
            }
        } else {
            throw bad_request("'stop' must be a string or an array of strings", "stop");
        }
        if (gp.stop.size() > 16) throw bad_request("at most 16 stop strings", "stop");
        for (const auto& s : gp.stop)
            if (s.empty()) throw bad_request("'stop' holds an empty string", "stop");
    }

    if (chat) {
        const auto lp = body.find("logprobs");
        r.want_logprobs = lp != body.end() && !lp->is_null() && field<bool>(body, "logprobs", false);
        const int top = field<int>(body, "top_logprobs", 0);
        detail::in_range(top, 0, 20, "top_logprobs");
        if (top > 0 && !r.want_logprobs) throw bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs");
        gp.n_logprobs = r.want_logprobs ? top : -1;

        const auto m = body.find("messages");
        if (m == body.end() || !m->is_array() || m->empty()) throw bad_request("'messages' must be a non-empty array", "messages");
        std::vector<chat_message> messages;
        for (std::size_t i = 0; i < m->size(); ++i) {
            const auto& msg = (*m)[i];
            const std::string where = "messages[" + std::to_string(i) + "]";
            if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string())
                throw bad_request(where + " needs a string 'role'", "messages");
            chat_message cm{msg["role"].get<std::string>(), ""};
            const auto& content = msg.contains("content") ? msg["content"] : json();
            if (content.is_string()) cm.content = content.get<std::string>();
            else if (content.is_array()) {  // [{type: "text", text: ...}, ...]
                for (const auto& part : content) {
                    // part["type"] may be any JSON value: value("type", "") would throw type_error for a non-string.
                    if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
                        !part["text"].is_string())
                        throw bad_request(where + ": only text content parts are supported", "messages");
                    cm.content += part["text"].get<std::string>();
                }
            } else if (!content.is_null()) {
                throw bad_request(where + ".content must be a string or an array of text parts", "messages");
            }
            messages.push_back(std::move(cm));
        }
        std::string text;
        try {
            text = tmpl.apply(messages);
        } catch (const error& ex) {
            throw bad_request(ex.what(), "messages");
        }
        r.prompts.push_back(e.model().vocab->encode(text, e.model().vocab->add_bos_default(), true));
        const std::string eot = tmpl.end_of_turn();
        if (!eot.empty() && eot != "\n") gp.stop.push_back(eot);
    } else {
        const auto lp = body.find("logprobs");
        if (lp != body.end() && !lp->is_null()) {
            if (lp->is_boolean()) gp.n_logprobs = lp->get<bool>() ? 0 : -1;
            else {
                gp.n_logprobs = field<int>(body, "logprobs", 0);
                detail::in_range(gp.n_logprobs, 0, 20, "logprobs");
            }
        }
        r.want_logprobs = gp.n_logprobs >= 0;
        const auto p = body.find("prompt");
        if (p == body.end() || p->is_null()) throw bad_request("'prompt' is required", "prompt");
        if (p->is_string()) r.prompts.push_back(e.tokenize(p->get<std::string>()));
        else if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) r.prompts.push_back(detail::token_array(*p, e, "prompt"));
        else if (p->is_array() && !p->empty()) {
            for (const auto& item : *p) {
                if (item.is_string()) r.prompts.push_back(e.tokenize(item.get<std::string>()));
                else if (item.is_array()) r.prompts.push_back(detail::token_array(item, e, "prompt"));
                else throw bad_request("'prompt' items must be strings or token arrays", "prompt");
            }
        } else {
            throw bad_request("'prompt' must be a string, an array of strings or an array of token ids", "prompt");
        }
        if (r.prompts.size() * static_cast<std::size_t>(r.n) > 64) throw bad_request("more than 64 choices in one request", "prompt");
    }
    for (const auto& pr : r.prompts) {
        if (pr.empty()) throw bad_request("the prompt is empty (no tokens)", chat ? "messages" : "prompt");
        if (static_cast<std::int64_t>(pr.size()) >= e.n_ctx_slot())
            throw bad_request("the prompt has " + std::to_string(pr.size()) + " tokens; this server's context holds " +
                                  std::to_string(e.n_ctx_slot()) + " per request (prompt plus at least one generated token)",
                              chat ? "messages" : "prompt", "context_length_exceeded");
    }
    return r;
}

// A request body's bytes to a request: malformed JSON is a 400 like a bad field is. Every nlohmann
// exception is caught, not only parse_error: a number beyond a double's range (1e400) is out_of_range.
// The message quotes what the parser read, which may be ill-formed UTF-8 (see json_text).
inline api_request parse_request_body(std::string_view body, const engine& e, const chat_template& tmpl, bool chat) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception& ex) {
        throw bad_request(std::string("malformed JSON: ") + ex.what());
    }
    return parse_request(j, e, tmpl, chat);
}

// The text of a response body or streamed event. A string the server did not validate (an error
// message quoting the request's bytes) may be ill-formed UTF-8; it is written with U+FFFD, as
// llama.cpp's server does, instead of nlohmann's dump() throwing type_error 316 (a 500 for a 400).
inline std::string json_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

inline const char* finish_reason(stop_reason r) {
    switch (r) {
        case stop_reason::max_tokens:
        case stop_reason::context_full: return "length";
        default: return "stop";
    }
}

// The text of one token as it reads inside a text (a SentencePiece word keeps its leading space), so
// a choice's tokens concatenate to its text, as OpenAI's logprobs show them. A byte token that is
// part of a multi-byte character shows as U+FFFD.
inline std::string token_text(const tokenizer& tok, std::int32_t id) {
    stream_decoder d(tok, false);
    std::string s = d.push(id);
    return s + d.flush();
}

inline json bytes_of(const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
}

// The logprobs object of one choice for a slice of its tokens: the legacy completions form
// (tokens, token_logprobs, top_logprobs, text_offset) or the chat form ({content: [...]}).
inline json logprobs_json(const tokenizer& tok, std::span<const token_logprobs> lps, bool chat, std::size_t text_offset = 0) {
    if (chat) {
        json content = json::array();
        for (const auto& t : lps) {
            const std::string s = token_text(tok, t.id);
            json top = json::array();
            for (const auto& a : t.top) {
                const std::string as = token_text(tok, a.id);
                top.push_back({{"token", as}, {"logprob", a.logprob}, {"bytes", bytes_of(as)}});
            }
            content.push_back({{"token", s}, {"logprob", t.logprob}, {"bytes", bytes_of(s)}, {"top_logprobs", top}});
        }
        return json{{"content", content}};
    }
    json tokens = json::array(), token_logprobs_ = json::array(), top = json::array(), offsets = json::array();
    for (const auto& t : lps) {
        const std::string s = token_text(tok, t.id);
        tokens.push_back(s);
        token_logprobs_.push_back(t.logprob);
        json alternatives = json::object();
        for (const auto& a : t.top) {
            const std::string as = token_text(tok, a.id);
            if (!alternatives.contains(as)) alternatives[as] = a.logprob;  // distinct ids can share a text
        }
        top.push_back(alternatives);
        offsets.push_back(text_offset);
        text_offset += s.size();
    }
    return json{{"tokens", tokens}, {"token_logprobs", token_logprobs_}, {"top_logprobs", top}, {"text_offset", offsets}};
}

inline json usage_json(std::int64_t n_prompt, std::int64_t n_completion) {
    return {{"prompt_tokens", n_prompt}, {"completion_tokens", n_completion}, {"total_tokens", n_prompt + n_completion}};
}

// A whole (non-streamed) response. outputs: (prompts * n) results, prompt-major.
inline json response_json(const api_request& r, const tokenizer& tok, const std::vector<generation_output>& outputs,
                          const std::string& id, std::int64_t created, const std::string& model) {
    json choices = json::array();
    std::int64_t n_prompt = 0, n_completion = 0;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
        const auto& o = outputs[i];
        if (i % static_cast<std::size_t>(r.n) == 0) n_prompt += o.stats.n_prompt_tokens;
        n_completion += static_cast<std::int64_t>(o.tokens.size());
        json c = {{"index", i}, {"finish_reason", finish_reason(o.reason)}, {"logprobs", nullptr}};
        if (r.want_logprobs) c["logprobs"] = logprobs_json(tok, o.logprobs, r.chat);
        if (r.chat) c["message"] = {{"role", "assistant"}, {"content", o.text}};
        else c["text"] = o.text;
        choices.push_back(c);
    }
    return json{{"id", id},
                {"object", r.chat ? "chat.completion" : "text_completion"},
                {"created", created},
                {"model", model},
                {"choices", choices},
                {"usage", usage_json(n_prompt, n_completion)}};
}

// One streamed chunk of choice `index`: text (may be empty), its tokens' logprobs, or the finish.
inline json chunk_json(const api_request& r, const std::string& id, std::int64_t created, const std::string& model,
                       std::size_t index, const std::string* text, const json& logprobs, const char* finish, bool first) {
    json c = {{"index", index}, {"logprobs", logprobs}, {"finish_reason", finish ? json(finish) : json(nullptr)}};
    if (r.chat) {
        json delta = json::object();
        if (first) delta["role"] = "assistant";
        if (text) delta["content"] = *text;
        c["delta"] = delta;
    } else {
        c["text"] = text ? *text : std::string();
    }
    return json{{"id", id}, {"object", r.chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                {"model", model}, {"choices", json::array({c})}};
}

}  // namespace minigpt::serve
