// minigpt::serve::http_server: an OpenAI-compatible HTTP front end over a minigpt::engine
// (cpp-httplib; only this header needs it, a consumer of model.hpp never does).
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions (stream: true as server-sent
// events ending with `data: [DONE]`), POST /v1/embeddings (serve/embeddings_api.hpp: pooled
// final hidden states, L2-normalised, computed on the connection's thread by one embedder shared
// under a lock, beside the engine; the inputs of one request share forward passes), GET /v1/models, GET /health, GET /metrics (Prometheus text),
// GET and POST /lora-adapters (serve/adapters_api.hpp: per-request LoRA adapters, llama-server's way).
// Errors are OpenAI error objects: 400 malformed JSON or bad fields (a prompt longer than a slot:
// code context_length_exceeded), 401 a missing or wrong API key, 404 unknown path, 413 a body
// above max_body_bytes, 503 the engine's queue is full. Every HTTP request is served on its own
// thread of httplib's pool and blocks there while the engine thread generates. A streaming client
// that disconnects is noticed at the next write (every token) and its requests are cancelled,
// which frees their slots at the next engine step. httplib 0.11 gives a handler no way to see a
// closed connection, so a non-streamed request whose client left runs to its max_tokens.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <httplib.h>

#include "minigpt/generate/embedding.hpp"
#include "minigpt/generate/engine.hpp"
#include "minigpt/serve/adapters_api.hpp"
#include "minigpt/serve/embeddings_api.hpp"
#include "minigpt/serve/openai_api.hpp"
#include "minigpt/serve/response_cache.hpp"

namespace minigpt::serve {

struct server_options {
    std::string host = "127.0.0.1";
    int port = 8080;                       // 0: any free port (see http_server::port())
    std::string api_key;                   // empty: no authentication
    std::string model_name;                // reported by /v1/models and in responses
    std::size_t max_body_bytes = 4u << 20; // larger bodies get 413
    int n_http_threads = 32;               // concurrent connections served (more wait in httplib's queue)
    chat_template tmpl = chat_template::custom(custom_chat_format{});
    std::shared_ptr<response_cache> cache;  // completion cache (serve/response_cache.hpp); null: off
    pooling embedding_pooling = pooling::mean;  // /v1/embeddings (llama-server's --pooling); vectors are L2-normalised
    std::vector<lora_binding> lora;        // adapters loaded at startup, ids 0.. in order, with their initial scales
};

class http_server {
public:
    http_server(engine& e, server_options o) : engine_(e), opt_(std::move(o)) {
        if (opt_.model_name.empty()) opt_.model_name = "minigpt";
        const int n_threads = std::max(2, opt_.n_http_threads);
        server_.new_task_queue = [n_threads] { return new httplib::ThreadPool(static_cast<std::size_t>(n_threads)); };
        server_.set_payload_max_length(opt_.max_body_bytes);
        server_.set_read_timeout(30, 0);
        server_.set_write_timeout(30, 0);
        server_.set_keep_alive_timeout(2);  // bounds how long stop() waits for idle keep-alive connections
        for (const auto& b : opt_.lora) lora_scales_.push_back(b.scale);
        routes();
    }

    // Binds the socket; returns false when the address is taken or invalid.
    bool bind() {
        if (opt_.port == 0) port_ = server_.bind_to_any_port(opt_.host);
        else port_ = server_.bind_to_port(opt_.host, opt_.port) ? opt_.port : -1;
        return port_ > 0;
    }
    int port() const noexcept { return port_; }
    // Serves until stop() (call bind() first). Returns false if serving failed.
    bool serve() { return server_.listen_after_bind(); }
    void stop() { server_.stop(); }

    std::uint64_t http_requests() const noexcept { return n_http_.load(); }

private:
    using clock = std::chrono::steady_clock;

    // Events of one HTTP request's choices, passed from the engine thread to the connection's thread.
    struct exchange {
        std::mutex mutex;
        std::condition_variable cv;
        std::deque<std::string> events;    // SSE payloads ready to write
        std::vector<request_handle> handles;
        std::vector<bool> first;           // chat: the first chunk of a choice carries the role
        void push(std::string s) {
            {
                std::lock_guard<std::mutex> lock(mutex);
                events.push_back(std::move(s));
            }
            cv.notify_one();
        }
        void cancel_all() {
            for (auto& h : handles) h.cancel();
        }
        bool all_done() const {
            for (const auto& h : handles)
                if (!h.done()) return false;
            return true;
        }
    };

    static void send_json(httplib::Response& res, int status, const json& body) {
        res.status = status;
        res.set_content(json_text(body), "application/json");
    }
    static void send_error(httplib::Response& res, const api_error& e) { send_json(res, e.status(), e.body()); }

    bool authorized(const httplib::Request& req, httplib::Response& res) const {
        if (opt_.api_key.empty()) return true;
        const std::string want = "Bearer " + opt_.api_key;
        const std::string got = req.get_header_value("Authorization");
        // Constant-time comparison: the key is a secret.
        unsigned diff = got.size() != want.size();
        for (std::size_t i = 0; i < want.size(); ++i) diff |= static_cast<unsigned>(want[i] ^ (i < got.size() ? got[i] : 0));
        if (diff == 0) return true;
        send_error(res, api_error(401, "invalid_request_error", "Incorrect or missing API key (send 'Authorization: Bearer KEY')",
                                  {}, "invalid_api_key"));
        return false;
    }

    void routes() {
        server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
            ++n_http_;
            if (req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
            return authorized(req, res) ? httplib::Server::HandlerResponse::Unhandled : httplib::Server::HandlerResponse::Handled;
        });
        server_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty()) return;
            if (res.status == 413)
                send_error(res, api_error(413, "invalid_request_error", "request body too large"));
            else if (res.status == 404)
                send_error(res, api_error(404, "invalid_request_error", "no endpoint " + req.method + " " + req.path));
            else
                send_json(res, res.status, json{{"error", {{"message", "HTTP error " + std::to_string(res.status)},
                                                           {"type", "invalid_request_error"}, {"param", nullptr}, {"code", nullptr}}}});
        });
        server_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "internal error";
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            send_error(res, api_error(500, "server_error", what));
        });
        server_.Get("/health", [](const httplib::Request&, httplib::Response& res) { send_json(res, 200, {{"status", "ok"}}); });
        server_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) { send_json(res, 200, models_json()); });
        server_.Get("/models", [this](const httplib::Request&, httplib::Response& res) { send_json(res, 200, models_json()); });
        server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(metrics_text(), "text/plain; version=0.0.4");
        });
        for (const char* path : {"/v1/completions", "/completions"})
            server_.Post(path, [this](const httplib::Request& req, httplib::Response& res) { complete(req, res, false); });
        for (const char* path : {"/v1/chat/completions", "/chat/completions"})
            server_.Post(path, [this](const httplib::Request& req, httplib::Response& res) { complete(req, res, true); });
        for (const char* path : {"/v1/embeddings", "/embeddings"})
            server_.Post(path, [this](const httplib::Request& req, httplib::Response& res) { embed(req, res); });
        server_.Get("/lora-adapters", [this](const httplib::Request&, httplib::Response& res) {
            std::lock_guard<std::mutex> lock(lora_mutex_);
            send_json(res, 200, lora_adapters_json(opt_.lora, lora_scales_));
        });
        server_.Post("/lora-adapters", [this](const httplib::Request& req, httplib::Response& res) {
            try {
                const auto scales = parse_lora_scales(json::parse(req.body), opt_.lora.size(), "lora");
                std::lock_guard<std::mutex> lock(lora_mutex_);
                lora_scales_ = scales;
                send_json(res, 200, lora_adapters_json(opt_.lora, lora_scales_));
            } catch (const json::parse_error& e) {
                send_error(res, bad_request(std::string("malformed JSON: ") + e.what()));
            } catch (const api_error& e) {
                send_error(res, e);
            }
        });
    }

    // The adapters a completion runs with: its "lora" list, else the server's current scales.
    std::vector<lora_binding> request_adapters(const json& body) {
        if (const auto it = body.find("lora"); it != body.end() && !it->is_null())
            return bind_adapters(opt_.lora, parse_lora_scales(*it, opt_.lora.size(), "lora"));
        std::lock_guard<std::mutex> lock(lora_mutex_);
        return bind_adapters(opt_.lora, lora_scales_);
    }

    void embed(const httplib::Request& req, httplib::Response& res) {
        json body;
        try {
            body = json::parse(req.body);
        } catch (const json::parse_error& e) {
            return send_error(res, bad_request(std::string("malformed JSON: ") + e.what()));
        }
        const llm& lm = engine_.model();
        const auto& c = lm.weights->config();
        embedding_api_request r;
        try {
            r = parse_embedding_request(body, *lm.vocab, c.n_vocab, c.n_embd);
        } catch (const api_error& e) {
            return send_error(res, e);
        }
        std::vector<std::vector<float>> vectors;
        std::int64_t n_tokens = 0;
        {
            std::lock_guard<std::mutex> lock(embed_mutex_);
            if (!embedder_)
                embedder_ = std::make_unique<embedder>(lm, embedding_params{.pool = opt_.embedding_pooling, .normalize = true,
                                                                            .n_ctx = engine_.n_ctx_slot(), .n_threads = engine_.params().n_threads});
            for (const auto& ids : r.inputs) {
                if (static_cast<std::int64_t>(ids.size()) > engine_.n_ctx_slot())
                    return send_error(res, bad_request("an input of " + std::to_string(ids.size()) + " tokens exceeds the context of " +
                                                       std::to_string(engine_.n_ctx_slot()), "input", "context_length_exceeded"));
                n_tokens += static_cast<std::int64_t>(ids.size());
            }
            // Several inputs share forward passes (each its own sequence of one batch); one input
            // takes the single-sequence path.
            if (r.inputs.size() == 1) vectors.push_back(embedder_->embed_tokens(r.inputs.front()));
            else vectors = embedder_->embed_batch(r.inputs);
        }
        send_json(res, 200, embedding_response_json(vectors, r.base64, n_tokens, opt_.model_name));
    }

    json models_json() const {
        const auto& c = engine_.model().weights->config();
        return json{{"object", "list"},
                    {"data", json::array({json{{"id", opt_.model_name},
                                               {"object", "model"},
                                               {"created", started_},
                                               {"owned_by", "minigpt"},
                                               {"meta", {{"n_vocab", c.n_vocab},
                                                         {"n_ctx_train", c.n_ctx_train},
                                                         {"n_ctx_slot", engine_.n_ctx_slot()},
                                                         {"n_slots", engine_.params().n_slots},
                                                         {"n_params", engine_.model().weights->n_params()}}}}})}};
    }

    std::string metrics_text() const {
        const auto s = engine_.stats();
        std::string out;
        auto metric = [&](const char* name, const char* type, const char* help, double value) {
            out += std::string("# HELP minigpt_") + name + " " + help + "\n# TYPE minigpt_" + name + " " + type + "\nminigpt_" + name +
                   " " + std::to_string(value) + "\n";
        };
        metric("http_requests_total", "counter", "HTTP requests received.", static_cast<double>(n_http_.load()));
        metric("requests_total", "counter", "Generation requests submitted to the engine (one per choice).", static_cast<double>(s.requests_submitted));
        metric("requests_finished_total", "counter", "Generation requests finished (any reason).", static_cast<double>(s.requests_finished));
        metric("requests_cancelled_total", "counter", "Generation requests cancelled (client gone or shutdown).", static_cast<double>(s.requests_cancelled));
        metric("requests_rejected_total", "counter", "Generation requests refused because the queue was full.", static_cast<double>(s.requests_rejected));
        metric("requests_running", "gauge", "Requests holding a slot.", static_cast<double>(s.running));
        metric("requests_waiting", "gauge", "Requests queued for a slot.", static_cast<double>(s.waiting));
        metric("slots", "gauge", "Sequences decoded at once.", s.n_slots);
        metric("prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", static_cast<double>(s.prompt_tokens));
        metric("prompt_tokens_evaluated_total", "counter", "Prompt tokens computed (the rest reused a cached prefix).",
               static_cast<double>(s.prompt_tokens_evaluated));
        metric("tokens_generated_total", "counter", "Tokens generated.", static_cast<double>(s.generated_tokens));
        metric("engine_steps_total", "counter", "Engine steps (batches) run.", static_cast<double>(s.steps));
        metric("kv_cache_used_positions", "gauge", "KV cache positions held by running requests.", static_cast<double>(s.kv_positions_used));
        metric("kv_cache_positions", "gauge", "KV cache positions over all slots.", static_cast<double>(s.kv_positions_total));
        metric("kv_cache_usage_ratio", "gauge", "Used over total KV cache positions.",
               s.kv_positions_total > 0 ? static_cast<double>(s.kv_positions_used) / static_cast<double>(s.kv_positions_total) : 0.0);
        metric("kv_cache_bytes", "gauge", "Bytes allocated for the KV caches of all slots.", static_cast<double>(s.kv_bytes_total));
        metric("kv_cache_bytes_used", "gauge", "Bytes of the paged KV cache blocks in use (a shared block once).",
               static_cast<double>(s.kv_bytes_used));
        metric("kv_cache_bytes_shared", "gauge", "Bytes of the blocks held by several sequences (stored once).",
               static_cast<double>(s.kv_bytes_shared));
        metric("kv_cache_blocks", "gauge", "Blocks of the paged KV cache.", static_cast<double>(s.kv_blocks_total));
        metric("kv_cache_blocks_used", "gauge", "Blocks held by at least one sequence (running or cached for prefix reuse).",
               static_cast<double>(s.kv_blocks_used));
        metric("kv_cache_blocks_shared", "gauge", "Blocks held by several sequences, copy-on-write (forks, reused prompt prefixes).",
               static_cast<double>(s.kv_blocks_shared));
        metric("kv_cache_block_size", "gauge", "Positions per KV cache block.", static_cast<double>(s.kv_block_size));
        if (opt_.cache) out += opt_.cache->metrics_text();
        return out;
    }

    std::string new_id(bool chat) {
        static const char* hex = "0123456789abcdef";
        std::string id = chat ? "chatcmpl-" : "cmpl-";
        std::lock_guard<std::mutex> lock(id_mutex_);
        for (int i = 0; i < 24; ++i) id += hex[id_rng_() & 15];
        return id;
    }

    void complete(const httplib::Request& req, httplib::Response& res, bool chat) {
        json body;  // parsed here (not by parse_request_body) because the adapters are read from it too
        try {
            body = json::parse(req.body);
        } catch (const json::exception& e) {  // not only parse_error: 1e400 is out_of_range
            return send_error(res, bad_request(std::string("malformed JSON: ") + e.what()));
        }
        api_request r;
        std::vector<lora_binding> adapters;
        try {
            r = parse_request(body, engine_, opt_.tmpl, chat);
            adapters = request_adapters(body);
            for (const auto& b : adapters) r.adapter_ids.push_back(b.adapter->path() + "@" + std::to_string(b.scale));
        } catch (const api_error& e) {
            return send_error(res, e);
        } catch (const error& e) {
            return send_error(res, bad_request(e.what()));
        }
        auto ex = std::make_shared<exchange>();
        const std::string id = new_id(chat);
        const std::int64_t created = std::chrono::duration_cast<std::chrono::seconds>(
                                         std::chrono::system_clock::now().time_since_epoch()).count();
        const std::string model = opt_.model_name;
        const auto& tok = *engine_.model().vocab;
        if (opt_.cache) {
            if (auto hit = opt_.cache->lookup(r)) {  // answered before: nothing goes to the engine
                if (!r.stream) return send_json(res, 200, response_json(r, tok, *hit, id, created, model));
                res.set_header("Cache-Control", "no-cache");
                return res.set_content(cached_stream_body(r, *hit, id, created, model), "text/event-stream");
            }
        }
        // Submit every choice; n > 1 with a seed gives choice i the seed + i.
        try {
            std::size_t index = 0;
            // Sized before the first submit: the engine thread writes first[i] from choice i's callback
            // while later choices are still being submitted here (a push_back could move the storage).
            if (r.stream) ex->first.assign(r.prompts.size() * static_cast<std::size_t>(r.n), true);
            for (const auto& prompt : r.prompts)
                for (int k = 0; k < r.n; ++k, ++index) {
                    engine_request er{prompt, r.params, {}, adapters};
                    if (er.params.sampling.seed != k_random_seed) er.params.sampling.seed += static_cast<std::uint64_t>(k);
                    if (r.stream) {
                        std::weak_ptr<exchange> weak = ex;
                        er.on_token = [weak, &tok, r_ = r, id, created, model, index](const token_event& ev) {
                            auto x = weak.lock();
                            if (!x) return false;
                            const bool has_lp = r_.want_logprobs && ev.logprobs;
                            if (ev.text.empty() && !has_lp) return true;
                            const std::string text(ev.text);
                            json lp = has_lp ? logprobs_json(tok, std::span(ev.logprobs, 1), r_.chat) : json(nullptr);
                            bool first;
                            {
                                std::lock_guard<std::mutex> lock(x->mutex);
                                first = x->first[index];
                                x->first[index] = false;
                            }
                            x->push(json_text(chunk_json(r_, id, created, model, index, &text, lp, nullptr, first)));
                            return true;
                        };
                    }
                    ex->handles.push_back(engine_.submit(std::move(er)));
                }
        } catch (const queue_full_error& e) {
            ex->cancel_all();
            return send_error(res, api_error(503, "server_error", std::string("server busy: ") + e.what(), {}, "queue_full"));
        } catch (const request_error& e) {
            ex->cancel_all();
            return send_error(res, bad_request(e.what()));
        } catch (const error& e) {  // shutting down
            ex->cancel_all();
            return send_error(res, api_error(503, "server_error", e.what()));
        }

        if (r.stream) {
            res.set_header("Cache-Control", "no-cache");
            res.set_chunked_content_provider(
                "text/event-stream",
                [ex, r, id, created, model, cache = opt_.cache](std::size_t, httplib::DataSink& sink) {
                    auto write = [&](const std::string& payload) {
                        const std::string frame = "data: " + payload + "\n\n";
                        return sink.write(frame.data(), frame.size());
                    };
                    for (;;) {
                        std::deque<std::string> batch;
                        bool done;
                        {
                            std::unique_lock<std::mutex> lock(ex->mutex);
                            ex->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !ex->events.empty(); });
                            batch.swap(ex->events);
                        }
                        done = ex->all_done();
                        for (const auto& e : batch)
                            if (!write(e)) { ex->cancel_all(); return false; }
                        if (!done) {
                            if (batch.empty() && !sink.is_writable()) { ex->cancel_all(); return false; }
                            continue;
                        }
                        {
                            std::lock_guard<std::mutex> lock(ex->mutex);
                            batch.swap(ex->events);  // anything pushed after the check above
                        }
                        for (const auto& e : batch)
                            if (!write(e)) return false;
                        std::int64_t n_prompt = 0, n_completion = 0;
                        std::vector<generation_output> finished;  // for the completion cache
                        for (std::size_t i = 0; i < ex->handles.size(); ++i) {
                            generation_output o;
                            try {
                                o = ex->handles[i].wait();
                            } catch (const std::exception& e) {
                                write(json_text(json{{"error", {{"message", e.what()}, {"type", "server_error"}}}}));
                                continue;
                            }
                            if (cache) finished.push_back(o);
                            if (i % static_cast<std::size_t>(r.n) == 0) n_prompt += o.stats.n_prompt_tokens;
                            n_completion += static_cast<std::int64_t>(o.tokens.size());
                            write(json_text(chunk_json(r, id, created, model, i, nullptr, nullptr, finish_reason(o.reason),
                                                       r.chat && ex->first[i])));
                        }
                        if (r.stream_usage)
                            write(json_text(json{{"id", id}, {"object", r.chat ? "chat.completion.chunk" : "text_completion"},
                                                 {"created", created}, {"model", model}, {"choices", json::array()},
                                                 {"usage", usage_json(n_prompt, n_completion)}}));
                        if (cache) cache->store(r, finished);  // before [DONE]: a client's next request can hit
                        write("[DONE]");
                        sink.done();
                        return true;
                    }
                },
                [ex](bool success) {
                    if (!success) ex->cancel_all();
                });
            return;
        }

        // Not streamed: wait for every choice.
        std::vector<generation_output> outputs;
        try {
            for (auto& h : ex->handles) outputs.push_back(h.wait());
        } catch (const std::exception& e) {
            ex->cancel_all();
            return send_error(res, api_error(500, "server_error", e.what()));
        }
        if (opt_.cache) opt_.cache->store(r, outputs);
        send_json(res, 200, response_json(r, tok, outputs, id, created, model));
    }

    engine& engine_;
    server_options opt_;
    httplib::Server server_;
    int port_ = -1;
    std::atomic<std::uint64_t> n_http_{0};
    std::int64_t started_ = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::mutex id_mutex_;
    std::mt19937_64 id_rng_{std::random_device{}()};
    std::mutex lora_mutex_;
    std::vector<float> lora_scales_;       // (opt_.lora) the scales of requests without a "lora" field
    std::mutex embed_mutex_;               // one /v1/embeddings request at a time uses the embedder
    std::unique_ptr<embedder> embedder_;   // made at the first /v1/embeddings request
};

}  // namespace minigpt::serve
