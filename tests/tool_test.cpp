// End-to-end tests of the `minigpt` subcommands owned by the model/generation layer:
// logits, generate, synth, bench and chat, checked against the reference data and the
// library (the tool must print what the library computes).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "minigpt/generate/generation.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/text/chat_template.hpp"
#include "test_data.hpp"

using namespace minigpt;
using minigpt::test::read_f32;
using minigpt::test::read_ids;
using minigpt::test::run;
using minigpt::test::shared_path;

namespace {

std::string tool() { return MINIGPT_TOOL; }

#define REQUIRE_TOOL() \
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "the minigpt tool is not built (" << MINIGPT_TOOL << ")"

}  // namespace

TEST(Tool, LogitsMatchTheReference) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    const auto dir = test::temp_dir("tool-logits");
    const std::string out = (dir / "out.f32").string();
    ASSERT_EQ(run(tool() + " logits -m " + shared_path("models/gpt2-tiny.gguf") + " --ids " +
                  shared_path("golden/gpt2-tiny/prompt-ids.txt") + " -o " + out + " -t 2 2>/dev/null"), 0);
    const auto got = read_f32(out);
    const auto ref = read_f32(shared_path("golden/gpt2-tiny/prompt-logits.f32"));
    ASSERT_EQ(got.size(), ref.size());
    float worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - ref[i]));
    EXPECT_LT(worst, 1e-3f);
    EXPECT_NE(run(tool() + " logits -m " + shared_path("models/gpt2-tiny.gguf") + " -o " + out + " 2>/dev/null"), 0);  // no --ids
}

TEST(Tool, GenerateGreedyIdsMatchLlamaCpp) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    std::string out;
    ASSERT_EQ(run(tool() + " generate -m " + shared_path("models/gpt2-tiny.gguf") + " --ids " +
                  shared_path("golden/gpt2-tiny/prompt-ids.txt") + " -n 32 --temp 0 2>/dev/null", &out), 0);
    std::istringstream in(out);
    std::vector<std::int32_t> ids;
    std::int32_t v;
    while (in >> v) ids.push_back(v);
    EXPECT_EQ(ids, read_ids(shared_path("golden/gpt2-tiny/greedy-continuation-ids.txt")));
}

TEST(Tool, GenerateTextEqualsTheLibrary) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    // A llama2.c checkpoint without tokenizer.bin beside it uses the synthetic vocabulary (said on stderr).
    std::string out, err_file = (test::temp_dir("tool-gen") / "err.txt").string();
    ASSERT_EQ(run(tool() + " generate -m " + shared_path("models/stories260K.bin") + " -p '' -n 20 --temp 0 --no-stats 2>" +
                  err_file, &out), 0);
    EXPECT_NE(test::read_text(err_file).find("synthetic"), std::string::npos);
    const auto golden = read_ids(shared_path("golden/stories260K/greedy-ids.txt"));
    const tokenizer tok(synthetic_vocab(512));
    const std::vector<std::int32_t> first20(golden.begin() + 1, golden.begin() + 21);
    EXPECT_EQ(out, tok.decode(first20) + "\n");
}

TEST(Tool, SynthInfoAndBench) {
    REQUIRE_TOOL();
    const auto dir = test::temp_dir("tool-synth");
    const std::string file = (dir / "tiny-q8.gguf").string();
    ASSERT_EQ(run(tool() + " synth --arch gpt2 --preset tiny --type q8_0 -o " + file + " 2>/dev/null"), 0);
    auto m = model::load(file);
    EXPECT_EQ(m->config().arch, architecture::gpt2);
    EXPECT_EQ(m->config().n_embd, 64);
    EXPECT_EQ(m->weights().layers[1].ffn_down.type(), dtype::q8_0);
    EXPECT_EQ(m->gguf()->get<std::uint32_t>("general.file_type"), 7u);  // llama.cpp's MOSTLY_Q8_0
    std::string info;
    ASSERT_EQ(run(tool() + " info -m " + file, &info), 0);
    EXPECT_NE(info.find("blk.1.ffn_down.weight"), std::string::npos);
    EXPECT_NE(info.find("q8_0"), std::string::npos);

    std::string json;
    ASSERT_EQ(run(tool() + " bench -m " + file + " -p 16 -n 4 -t 1 -r 2 -o json 2>/dev/null", &json), 0);
    const auto results = nlohmann::json::parse(json);
    ASSERT_EQ(results.size(), 2u);
    EXPECT_EQ(results[0]["test"], "pp16");
    EXPECT_EQ(results[1]["test"], "tg4");
    for (const auto& r : results) {
        EXPECT_EQ(r["n_threads"], 1);
        EXPECT_GT(r["avg_ts"].get<double>(), 0.0);
        EXPECT_GE(r["stddev_ts"].get<double>(), 0.0);
        EXPECT_EQ(r["samples_ts"].size(), 2u);
    }
    std::string table;
    ASSERT_EQ(run(tool() + " bench -m " + file + " -p 8 -n 0 -t 1 -r 1 2>/dev/null", &table), 0);
    EXPECT_NE(table.find("| gpt2"), std::string::npos);
    EXPECT_NE(table.find("pp8"), std::string::npos);
    EXPECT_NE(run(tool() + " bench -m " + file + " -o xml 2>/dev/null"), 0);
    EXPECT_NE(run(tool() + " synth --arch rnn -o " + file + " 2>/dev/null"), 0);
    EXPECT_NE(run(tool() + " synth --arch llama --preset nope -o " + file + " 2>/dev/null"), 0);
}

// `minigpt info` lists any GGUF: here one with a tensor of a type minigpt cannot compute with
// (iq2_xxs, ggml type 16) of an architecture it does not know, written byte by byte; the last line
// says it cannot run it and why. A synthesised gemma2 file is reported as runnable.
TEST(Tool, InfoListsAnyGgufAndSaysWhetherItRuns) {
    REQUIRE_TOOL();
    const auto dir = test::temp_dir("tool-info");
    std::string bytes = "GGUF";
    auto u32 = [&](std::uint32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
    auto u64 = [&](std::uint64_t v) { bytes.append(reinterpret_cast<const char*>(&v), 8); };
    auto str = [&](const std::string& v) { u64(v.size()); bytes += v; };
    u32(3), u64(1), u64(1);                                   // version, tensors, keys
    str("general.architecture"), u32(8), str("mamba9");      // a string key
    str("blk.0.ssm.weight"), u32(2), u64(256), u64(3), u32(16), u64(0);  // (3, 256) iq2_xxs at offset 0
    while (bytes.size() % 32) bytes += '\0';
    bytes.append(3 * 66, '\x01');                            // three rows of one 66-byte block
    const std::string file = (dir / "odd.gguf").string();
    std::ofstream(file, std::ios::binary) << bytes;
    std::string info;
    ASSERT_EQ(run(tool() + " info -m " + file, &info), 0);
    EXPECT_NE(info.find("blk.0.ssm.weight"), std::string::npos) << info;
    EXPECT_NE(info.find("iq2_xxs"), std::string::npos) << info;
    EXPECT_NE(info.find("cannot run this file"), std::string::npos) << info;
    EXPECT_NE(info.find("mamba9"), std::string::npos) << info;

    const std::string gemma = (dir / "gemma2.gguf").string();
    ASSERT_EQ(run(tool() + " synth --arch gemma2 --preset tiny --type q8_0 -o " + gemma + " 2>/dev/null"), 0);
    ASSERT_EQ(run(tool() + " info -m " + gemma, &info), 0);
    EXPECT_NE(info.find("runs this file: gemma2"), std::string::npos) << info;
    EXPECT_NE(info.find("blk.3.post_ffw_norm.weight"), std::string::npos) << info;
}

TEST(Tool, ChatRepliesAreTheGreedyContinuationsOfTheConversation) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    std::string out;
    ASSERT_EQ(run("printf 'Hello there\\nHow are you?\\n' | " + tool() + " chat -m " + shared_path("models/gpt2-tiny.gguf") +
                  " --chat-template chatml -n 6 --temp 0 2>/dev/null", &out), 0);
    // The library's answer for each turn, computed from scratch (no KV reuse) for the whole conversation.
    const llm lm = llm::load(shared_path("models/gpt2-tiny.gguf"));
    const auto tmpl = chat_template::from_name("chatml");
    std::vector<chat_message> messages;
    std::string expected;
    for (const char* line : {"Hello there", "How are you?"}) {
        messages.push_back({"user", line});
        context ctx(lm.weights);
        generation_params p;
        p.max_tokens = 6;
        p.sampling = sampling_params::greedy();
        p.stop = {tmpl.end_of_turn()};
        const auto reply = generate(lm, ctx, tmpl.apply(messages), p);
        expected += reply.text + "\n";
        messages.push_back({"assistant", reply.text});
    }
    EXPECT_EQ(out, expected);
}
