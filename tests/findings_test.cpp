// Regression tests for the faults found by fuzzing and hostile inputs (issue 15, docs/reliability.md):
// each test here failed on the code before the fix (82eb930) and names the finding it guards.
// They use only APIs that existed then, so the file compiles on both sides of the fix.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "minigpt/generate/generation.hpp"
#include "minigpt/generate/tool_use.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/text/chat_template.hpp"
#include "minigpt/text/vocab_gguf.hpp"
#include "test_data.hpp"

using namespace minigpt;

namespace {

std::shared_ptr<const model> model_from(const std::vector<std::byte>& bytes, const std::string& name) {
    auto b = std::make_shared<const std::vector<std::byte>>(bytes);
    return model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(b, name)));
}

std::vector<std::byte> synth_bytes(const synth_preset& p, dtype type = dtype::f32) {
    io::gguf_writer w;
    synthesize(w, p, type, 3);
    return w.finish_to_memory();
}

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const error& e) {
        return e.what();
    }
    return "(no minigpt::error)";
}

}  // namespace

// Finding: nlohmann's out_of_range (a number beyond double's range) escaped the chat-messages parser,
// which caught only parse_error.
TEST(Findings, ChatMessagesNumberOverflowIsMinigptError) {
    for (const char* text : {R"([{"role": "user", "content": "x", "n": 1e400}])", R"([1e400])", R"(-1e999)"}) {
        SCOPED_TRACE(text);
        EXPECT_THROW(chat_messages_from_json(text), error);
    }
}

// Finding: the same escape from tool-call parsing; a malformed call must become a malformed-call record.
TEST(Findings, ToolCallNumberOverflowIsMalformedCall) {
    tool_use_options o;
    o.json = json_call_tags{};
    std::string error_text;
    tool_call_record call;
    EXPECT_NO_THROW(call = detail::parse_tool_call("<tool_call>{\"name\": \"calc\", \"arguments\": {\"x\": 1e400}}",
                                                   o.json->close, o, error_text));
    EXPECT_EQ(error_text.rfind("error: malformed tool call JSON: ", 0), 0u) << error_text;
    EXPECT_FALSE(call.ok);
}

// Fuzzer finding (fuzz_chat_json, after the issue's list): {"name": ""} came back as a call to tool ""
// with no error text; an empty name is a malformed call like a missing one.
TEST(Findings, ToolCallWithEmptyNameIsMalformedCall) {
    tool_use_options o;
    o.json = json_call_tags{};
    for (const char* body : {R"({"name":""})", R"({"name": "", "arguments": {"q": 1}})"}) {
        SCOPED_TRACE(body);
        std::string error_text;
        const tool_call_record call = detail::parse_tool_call(std::string("<tool_call>") + body, o.json->close, o, error_text);
        EXPECT_EQ(error_text, "error: a tool call must be a JSON object with a non-empty string \"name\"");
        EXPECT_TRUE(call.tool.empty());
        EXPECT_FALSE(call.ok);
    }
}

// Finding: a 32 KB GGUF whose context_length is 2^24 made the default context reserve 2 x 8 GiB of KV
// cache. The default is now llama.cpp's 4096 when the model was trained on more.
TEST(Findings, DefaultContextIsCappedAt4096) {
    synth_preset p = find_synth_preset(architecture::llama, "tiny");
    p.n_ctx = 1 << 24;
    const auto m = model_from(synth_bytes(p), "long-context.gguf");
    ASSERT_EQ(m->config().n_ctx_train, 1 << 24);
    context ctx(m);
    EXPECT_EQ(ctx.n_ctx(), 4096);
    // K and V, per layer, one row of kv_dim floats per position: 2 * 2 * 4096 * 32 * 4 bytes.
    EXPECT_EQ(ctx.kv_bytes(), 2ll * p.n_layer * 4096 * (p.n_embd / p.n_head * p.n_head_kv) * 4);
    // A model trained on less keeps its own context.
    p.n_ctx = 256;
    context small(model_from(synth_bytes(p), "short.gguf"));
    EXPECT_EQ(small.n_ctx(), 256);
}

// Finding: an explicit context whose KV cache exceeds the memory there is was accepted (its pages
// are committed only when written, so the process would be killed later). It is refused, and the
// message says which -c fits.
TEST(Findings, KvCacheLargerThanMemoryIsRefusedWithAContextThatFits) {
    synth_preset p = find_synth_preset(architecture::llama, "tiny");
    p.n_layer = 8;
    p.n_head_kv = p.n_head;  // kv_dim 64: 2 * 8 * 64 * 4 = 4096 bytes per position
    const std::uint64_t per_position = 2ull * 8 * 64 * 4;
    const auto m = model_from(synth_bytes(p), "wide-kv.gguf");
    const std::int64_t n_ctx = 1 << 24;  // 64 GiB of KV cache
    const std::uint64_t available = available_memory_bytes();
    if (available == 0) GTEST_SKIP() << "available memory is unknown here (no /proc/meminfo)";
    if (available >= per_position * n_ctx) GTEST_SKIP() << "this machine has more than 64 GiB available";
    const std::string msg = message_of([&] { context ctx(m, {.n_ctx = n_ctx}); });
    std::smatch mm;
    ASSERT_TRUE(std::regex_search(msg, mm, std::regex(R"(only (\d+) MiB of memory is available; n_ctx \(-c\) (\d+) or less fits)")))
        << msg;
    const std::uint64_t said_available = std::stoull(mm[1]) << 20, fits = std::stoull(mm[2]);
    EXPECT_NE(msg.find("16777216 positions needs 65536 MiB"), std::string::npos) << msg;
    EXPECT_EQ(fits % 256, 0u);
    EXPECT_LE(fits * per_position, said_available + (1u << 20));              // it fits...
    EXPECT_GT((fits + 256) * per_position, said_available);                   // ...and is the largest multiple of 256 that does
    // And the context it proposes can be made.
    context ok(m, {.n_ctx = static_cast<std::int64_t>(std::min<std::uint64_t>(fits / 4, 4096))});
    EXPECT_GT(ok.n_ctx(), 0);
}

// Finding: a tokenizer with fewer tokens than the model was accepted at load and failed later as
// "token id N is out of range". llama.cpp requires the two to match; so does llm::load.
TEST(Findings, TokenizerSmallerThanModelIsRefusedAtLoad) {
    const auto dir = test::temp_dir("findings-vocab");
    const std::string path = (dir / "small-vocab.gguf").string();
    {
        io::gguf_writer w(path);
        write_vocab(w, synthetic_vocab(300));
        synthesize(w, find_synth_preset(architecture::llama, "tiny"), dtype::f32, 3);  // 512 rows of token_embd
        w.finish();
    }
    const std::string msg = message_of([&] { llm::load(path); });
    EXPECT_NE(msg.find("tokenizer has 300 tokens but the model 512"), std::string::npos) << msg;
    std::filesystem::remove_all(dir);
}

// Finding: NaN weights surfaced as "sampler: logit of token 6 is -nan". The error now says it is a
// problem of the model file and names the first layer producing non-finite values and its bad tensor.
TEST(Findings, NonFiniteLogitsNameTheLayerOfTheModelFile) {
    auto bytes = synth_bytes(find_synth_preset(architecture::llama, "tiny"));
    {  // Overwrite one row of blk.1.ffn_down.weight with NaN (all-ones bytes are a NaN in f32).
        const auto probe = model_from(bytes, "probe.gguf");
        const io::gguf_file& f = *probe->gguf();
        const auto* info = f.find_tensor("blk.1.ffn_down.weight");
        ASSERT_NE(info, nullptr);
        const tensor& t = probe->weights().layers[1].ffn_down;
        const std::size_t offset = f.data_offset() + info->offset;
        std::memset(bytes.data() + offset + 5 * t.row_bytes(), 0xFF, static_cast<std::size_t>(t.row_bytes()));
    }
    llm lm;
    lm.weights = model_from(bytes, "nan-weights.gguf");
    lm.vocab = std::make_shared<const tokenizer>(synthetic_vocab(512));
    context ctx(lm.weights, {.n_ctx = 64});
    generation_params gp;
    gp.max_tokens = 4;
    const std::string msg = message_of([&] { generate(lm, ctx, "hello world", gp); });
    EXPECT_NE(msg.find("model file nan-weights.gguf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("layer 1 (blk.1.*) is the first"), std::string::npos) << msg;
    EXPECT_NE(msg.find("non-finite weights in blk.1.ffn_down.weight"), std::string::npos) << msg;
}
