// `minigpt serve`: an OpenAI-compatible HTTP server (llama-server's flags) over the
// continuous-batching engine. Built only when cpp-httplib is found (Debian: libcpp-httplib-dev).
// SIGINT / SIGTERM end every request (streams get their final chunk) and stop cleanly.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <thread>

#include "cache_flags.hpp"
#include "command.hpp"
#include "lora_flags.hpp"
#include "minigpt/generate/engine.hpp"
#include "minigpt/serve/http_server.hpp"
#include "minigpt/text/chat_template.hpp"

namespace minigpt::tool {
namespace {

chat_template serve_template(const llm& lm, const std::string& name) {
    if (!name.empty()) return chat_template::from_name(name);
    const std::string& jinja = lm.vocab->chat_template();
    if (!jinja.empty()) {
        if (auto family = chat_template::detect(jinja)) return chat_template(*family);
        std::fprintf(stderr, "minigpt serve: the model's chat template is not a known family; chat uses a plain format\n");
    }
    return chat_template::custom(custom_chat_format{});
}

int run_serve(const std::vector<std::string>& args) {
    flags f(std::string("usage: minigpt serve -m MODEL [--host 127.0.0.1] [--port 8080] [-np N] [-c N_CTX_TOTAL] [--api-key KEY] [--cache FILE]") + lora_usage + "\n"
            "OpenAI-compatible API: POST /v1/completions, /v1/chat/completions, /v1/embeddings; GET /v1/models, /health, /metrics.");
    f.value({"-m", "--model"}, "model file (GGUF or llama2.c .bin)")
        .value({"--host"}, "address to bind (0.0.0.0 exposes the server to the network)", "127.0.0.1")
        .value({"--port"}, "port to listen on (0: any free port, printed on stderr)", "8080")
        .value({"-np", "--parallel"}, "slots: requests decoded at once", "4")
        .value({"-c", "--ctx-size"}, "KV cache positions over all slots, split evenly (0: the model's context per slot)", "0")
        .value({"-b", "--batch-size"}, "tokens per engine step (running decodes + prompt chunks)", "512")
        .value({"-t", "--threads"}, "threads for the forward pass (0: physical cores)", "0")
        .value({"--cache-type"}, "KV cache type: f32 or f16", "f32")
        .value({"--api-key"}, "require 'Authorization: Bearer KEY' (except /health)")
        .value({"--alias"}, "model name reported by the API (default: the file name)")
        .value({"--chat-template"}, "chat template name (default: detected from the model)")
        .value({"--tokenizer"}, "tokenizer for a llama2.c model")
        .value({"--max-queue"}, "requests waiting for a slot before new ones get 503", "64")
        .value({"--threads-http"}, "HTTP connections served at once", "32")
        .value({"--max-body"}, "largest request body in bytes (larger: 413)", "4194304")
        .value({"--cache"}, "completion cache: an SQLite FILE or redis://HOST:PORT; identical requests are answered from it")
        .value({"--cache-ttl"}, "seconds a cached completion stays valid (0: forever)", "0")
        .value({"--pooling"}, "pooling of /v1/embeddings: mean, last or cls", "mean");
    lora_args lora;  // adapters a request picks by id ("lora": [{"id": 0, "scale": 0.5}]); see serve/adapters_api.hpp
    f.parse(lora.take(args));
    if (f.help()) { std::cout << f.usage() << "  --lora FILE, --lora-scaled FILE SCALE  LoRA adapters (ids 0.. in order) with their default scales\n"; return 0; }

    // Signals go to one waiting thread (not to whichever thread happens to run): block them
    // before any thread exists so every thread inherits the mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill the server

    const auto n_slots = f.integer("--parallel");
    const auto n_ctx_total = f.integer("--ctx-size");
    if (n_slots < 1 || n_slots > 256) throw usage_error("-np must be in [1, 256]");
    if (n_ctx_total < 0) throw usage_error("-c must not be negative");
    const auto port = f.integer("--port");
    if (port < 0 || port > 65535) throw usage_error("--port must be in [0, 65535]");
    const auto max_queue = f.integer("--max-queue");
    if (max_queue < 1) throw usage_error("--max-queue must be at least 1");
    const auto http_threads = f.integer("--threads-http");
    if (http_threads < 2 || http_threads > 1024) throw usage_error("--threads-http must be in [2, 1024]");
    const auto max_body = f.integer("--max-body");
    if (max_body < 1024) throw usage_error("--max-body must be at least 1024");
    const std::string pool_name = f.str("--pooling");
    if (pool_name != "mean" && pool_name != "last" && pool_name != "cls") throw usage_error("--pooling must be mean, last or cls");
    const pooling embedding_pooling = parse_pooling(pool_name);

    const std::string path = f.require("--model");
    const llm lm = llm::load(path, f.str("--tokenizer"));
    std::int64_t n_ctx_slot = 0;
    if (n_ctx_total > 0) {
        n_ctx_slot = n_ctx_total / n_slots;
        if (n_ctx_slot < 8) throw usage_error("-c " + std::to_string(n_ctx_total) + " leaves fewer than 8 positions per slot");
    }
    engine eng(lm, {.n_slots = static_cast<int>(n_slots),
                    .n_ctx_slot = n_ctx_slot,
                    .token_budget = f.integer("--batch-size"),
                    .max_queue = static_cast<std::size_t>(max_queue),
                    .n_threads = static_cast<int>(f.integer("--threads")),
                    .kv_type = parse_dtype(f.str("--cache-type"))});

    serve::server_options o;
    o.host = f.str("--host");
    o.port = static_cast<int>(port);
    o.api_key = f.str("--api-key");
    o.model_name = f.has("--alias") ? f.str("--alias") : path.substr(path.find_last_of('/') + 1);
    o.max_body_bytes = static_cast<std::size_t>(max_body);
    o.n_http_threads = static_cast<int>(http_threads);
    o.tmpl = serve_template(lm, f.str("--chat-template"));
    if (f.has("--cache"))
        o.cache = std::make_shared<serve::response_cache>(open_completion_cache(f.str("--cache"), f.real("--cache-ttl")),
                                                          lm.weights->fingerprint(), f.str("--cache"));
    o.embedding_pooling = embedding_pooling;
    o.lora = lora.load();
    make_projection_deltas(*lm.weights, o.lora);  // an adapter of another model fails here, not at its first request
    serve::http_server server(eng, o);
    if (!server.bind()) throw error("cannot listen on " + o.host + ":" + std::to_string(port));

    std::atomic<bool> finished{false};
    std::thread signal_waiter([&] {
        const timespec tick{0, 200'000'000};
        while (!finished) {
            const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
            if (sig == SIGINT || sig == SIGTERM) {
                std::fprintf(stderr, "minigpt serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
                eng.shutdown();  // ends running requests, so their connections finish
                server.stop();
                return;
            }
        }
    });
    std::fprintf(stderr, "minigpt serve: %s, %d slots x %lld positions (KV cache %.1f MiB), chat template %s\n",
                 o.model_name.c_str(), static_cast<int>(n_slots), static_cast<long long>(eng.n_ctx_slot()),
                 static_cast<double>(eng.stats().kv_bytes_total) / (1 << 20), o.tmpl.name().c_str());
    if (o.cache) std::fprintf(stderr, "minigpt serve: completion cache %s\n", o.cache->where().c_str());
    std::fprintf(stderr, "minigpt serve: listening on http://%s:%d\n", o.host.c_str(), server.port());
    const bool ok = server.serve();
    finished = true;
    signal_waiter.join();
    eng.shutdown();
    std::fprintf(stderr, "minigpt serve: stopped\n");
    return ok ? 0 : 1;
}

const register_command reg_serve("serve", "OpenAI-compatible HTTP server with continuous batching", run_serve);

}  // namespace
}  // namespace minigpt::tool
