// Tests of the GGUF writer (io/gguf_writer.hpp) against images assembled byte by byte and the
// reader, and of `minigpt info`.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gguf_helpers.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "test_data.hpp"

using namespace minigpt;
using namespace minigpt::io;
using namespace minigpt::test;

// ---- writer ----

TEST(GgufWriter, MatchesHandBuiltImageByteForByte) {
    const auto t = build_tiny(3, true);
    gguf_writer w;
    w.set("general.architecture", "tiny");
    w.set("tiny.block_count", std::uint32_t{3});
    w.set("tiny.eps", 0.5f);
    w.set("tiny.flag", true);
    w.set("tiny.small", std::int8_t{-5});
    w.set("tiny.ids", std::vector<std::uint16_t>{1, 65535});
    w.set("tiny.nested", std::vector<std::vector<std::int32_t>>{{-1, 2}, {}});
    w.set("tiny.words", std::vector<std::string>{"a", "bc"});
    w.set_alignment(64);
    auto wt = tensor::empty(dtype::f32, {2, 3});
    for (int i = 0; i < 6; ++i) wt.data<float>()[i] = static_cast<float>(i + 1);
    w.add_tensor("w", wt);
    auto qt = tensor::empty(dtype::q8_0, {32});
    const std::uint16_t scale = 0x3c00;
    std::memcpy(qt.raw(), &scale, 2);
    for (int i = 0; i < 32; ++i) qt.raw()[2 + i] = static_cast<std::byte>(i);
    w.add_tensor("q", qt);
    const auto out = w.finish_to_memory();
    ASSERT_EQ(out.size(), t.img.b.size());
    EXPECT_TRUE(std::memcmp(out.data(), t.img.b.data(), out.size()) == 0);
}

TEST(GgufWriter, RoundTripsEveryValueType) {
    gguf_writer w;
    w.set("u8", std::uint8_t{200});
    w.set("i8", std::int8_t{-100});
    w.set("u16", std::uint16_t{60000});
    w.set("i16", std::int16_t{-30000});
    w.set("u32", std::uint32_t{4000000000u});
    w.set("i32", std::int32_t{-2000000000});
    w.set("f32", 3.25f);
    w.set("bool", false);
    w.set("str", std::string("h\xC3\xA9llo\nworld"));
    w.set("empty_str", std::string());
    w.set("u64", std::uint64_t{18000000000000000000ull});
    w.set("i64", std::int64_t{-9000000000000000000ll});
    w.set("f64", 1e300);
    w.set("arr_f32", std::vector<float>{1.5f, -2.0f});
    w.set("arr_i64", std::vector<std::int64_t>{-1, 1ll << 40});
    w.set("arr_bool", std::vector<bool>{true, false, true});
    w.set("arr_str", std::vector<std::string>{"x", "", "\xC4\x8A"});
    w.set("arr_empty", std::vector<std::uint32_t>{});
    w.set("arr_nested_str", std::vector<std::vector<std::string>>{{"a"}, {"b", "c"}});
    w.set("arr_deep", std::vector<std::vector<std::vector<double>>>{{{1.0}, {}}, {{2.0, 3.0}}});
    w.set("u32", std::uint32_t{7});  // re-set replaces the value in place
    auto f = gguf_file::from_memory(std::make_shared<const std::vector<std::byte>>(w.finish_to_memory()), "rt");
    EXPECT_EQ(f.keys().size(), 20u);
    EXPECT_EQ(f.keys()[4], "u32");
    EXPECT_EQ(f.get<std::uint8_t>("u8"), 200);
    EXPECT_EQ(f.get<std::int8_t>("i8"), -100);
    EXPECT_EQ(f.get<std::uint16_t>("u16"), 60000);
    EXPECT_EQ(f.get<std::int16_t>("i16"), -30000);
    EXPECT_EQ(f.get<std::uint32_t>("u32"), 7u);
    EXPECT_EQ(f.get<std::int32_t>("i32"), -2000000000);
    EXPECT_EQ(f.get<float>("f32"), 3.25f);
    EXPECT_FALSE(f.get<bool>("bool"));
    EXPECT_EQ(f.get<std::string>("str"), "h\xC3\xA9llo\nworld");
    EXPECT_EQ(f.value_string("str"), "h\xC3\xA9llo\\nworld");
    EXPECT_EQ(f.get<std::string>("empty_str"), "");
    EXPECT_EQ(f.get<std::uint64_t>("u64"), 18000000000000000000ull);
    EXPECT_THROW(f.get<std::int64_t>("u64"), lookup_error);
    EXPECT_EQ(f.get<std::int64_t>("i64"), -9000000000000000000ll);
    EXPECT_EQ(f.get<double>("f64"), 1e300);
    for (const char* k : {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "u64", "i64", "f64"})
        EXPECT_FALSE(f.value(k).is_array()) << k;
    EXPECT_EQ(f.type_of("u64"), gguf_type::uint64);
    EXPECT_EQ(f.type_of("f64"), gguf_type::float64);
    EXPECT_EQ(f.type_of("bool"), gguf_type::bool_);
    EXPECT_EQ(f.get<std::vector<float>>("arr_f32"), (std::vector<float>{1.5f, -2.0f}));
    EXPECT_EQ(f.get<std::vector<double>>("arr_f32"), (std::vector<double>{1.5, -2.0}));
    EXPECT_EQ(f.get<std::vector<std::int64_t>>("arr_i64"), (std::vector<std::int64_t>{-1, 1ll << 40}));
    EXPECT_THROW(f.get<std::vector<std::int32_t>>("arr_i64"), lookup_error);
    EXPECT_EQ(f.get<std::vector<bool>>("arr_bool"), (std::vector<bool>{true, false, true}));
    EXPECT_EQ(f.get<std::vector<std::string>>("arr_str"), (std::vector<std::string>{"x", "", "\xC4\x8A"}));
    EXPECT_TRUE(f.get<std::vector<std::uint32_t>>("arr_empty").empty());
    EXPECT_EQ(f.value("arr_empty").element_type(), gguf_type::uint32);
    EXPECT_EQ(f.get<std::vector<std::vector<std::string>>>("arr_nested_str"),
              (std::vector<std::vector<std::string>>{{"a"}, {"b", "c"}}));
    EXPECT_EQ(f.get<std::vector<std::vector<std::vector<double>>>>("arr_deep"),
              (std::vector<std::vector<std::vector<double>>>{{{1.0}, {}}, {{2.0, 3.0}}}));
    EXPECT_EQ(f.value_string("arr_deep"), "[[[1], []], [[2, 3]]]");
    EXPECT_EQ(f.value_string("arr_bool", 2), "[true, false, ... (1 more)]");
}

TEST(GgufWriter, RoundTripsEveryDtypeThroughAFile) {
    std::mt19937 rng(7);
    struct spec {
        dtype type;
        std::vector<std::int64_t> shape;
    };
    const std::vector<spec> specs = {
        {dtype::f32, {5}}, {dtype::f16, {3, 7}}, {dtype::bf16, {2, 3, 5}}, {dtype::q8_0, {2, 2, 2, 64}},
        {dtype::q4_0, {3, 32}}, {dtype::q4_k, {2, 256}}, {dtype::q6_k, {1, 512}},
    };
    const auto dir = test::temp_dir("gguf-writer");
    const auto path = (dir / "all.gguf").string();
    gguf_writer fw(path), mw;
    std::vector<tensor> sources;
    for (std::size_t i = 0; i < specs.size(); ++i) {
        auto t = tensor::empty(specs[i].type, specs[i].shape);
        for (std::int64_t b = 0; b < t.n_bytes(); ++b) t.raw()[b] = static_cast<std::byte>(rng());
        sources.push_back(t);
        const std::string name = "t." + std::string(dtype_name(specs[i].type));
        fw.add_tensor(name, t);
        mw.add_tensor(name, t);
    }
    // A view of rows 1..3 of a (4, 8) tensor: written from its own rows only.
    auto big = tensor::empty(dtype::f32, {4, 8});
    for (int i = 0; i < 32; ++i) big.data<float>()[i] = static_cast<float>(i);
    fw.add_tensor("view", big.rows(1, 3));
    mw.add_tensor("view", big.rows(1, 3));
    fw.set("general.architecture", "none");  // keys may come after tensors
    mw.set("general.architecture", "none");
    fw.finish();
    const auto mem = mw.finish_to_memory();
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    EXPECT_EQ(std::filesystem::directory_iterator(dir)->path().filename(), "all.gguf");  // no scratch file left

    const auto disk = read_file(path);
    ASSERT_EQ(disk->size(), mem.size());
    EXPECT_TRUE(std::memcmp(disk->data(), mem.data(), mem.size()) == 0);

    auto f = gguf_file::open(path);
    EXPECT_EQ(f.version(), 3u);
    ASSERT_EQ(f.tensors().size(), specs.size() + 1);
    for (std::size_t i = 0; i < specs.size(); ++i) {
        const auto& info = f.tensors()[i];
        EXPECT_EQ(info.type, specs[i].type);
        EXPECT_EQ(info.shape, specs[i].shape);
        EXPECT_EQ(info.offset % 32, 0u);
        const auto t = f.get_tensor(info.name);
        ASSERT_EQ(t.n_bytes(), sources[i].n_bytes());
        EXPECT_EQ(std::memcmp(t.raw(), sources[i].raw(), static_cast<std::size_t>(t.n_bytes())), 0) << info.name;
    }
    const auto v = f.get_tensor("view");
    EXPECT_EQ(v.shape_string(), "(2, 8)");
    EXPECT_EQ(v.row<float>(0)[0], 8.0f);
    EXPECT_EQ(v.row<float>(1)[7], 23.0f);
    EXPECT_EQ(f.file_size() % 32, 0u);  // the last tensor is padded too, as gguf.c does
    std::filesystem::remove_all(dir);
}

TEST(GgufWriter, CopiesTokenizerKeysFromAVocabFile) {
    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
    auto vocab = gguf_file::open(test::shared_path("vocab/ggml-vocab-gpt-2.gguf"));
    gguf_writer w;
    w.set("general.architecture", "gpt2");
    w.copy_metadata_from(vocab, "tokenizer.");
    auto f = gguf_file::from_memory(std::make_shared<const std::vector<std::byte>>(w.finish_to_memory()), "copy");
    EXPECT_EQ(f.keys().size(), 1u + 7u);  // + model, pre, tokens, token_type, merges, bos, eos
    EXPECT_FALSE(f.has("gpt2.block_count"));
    EXPECT_EQ(f.get<std::vector<std::string>>("tokenizer.ggml.tokens"), vocab.get<std::vector<std::string>>("tokenizer.ggml.tokens"));
    EXPECT_EQ(f.get<std::vector<std::string>>("tokenizer.ggml.merges"), vocab.get<std::vector<std::string>>("tokenizer.ggml.merges"));
    EXPECT_EQ(f.get<std::uint32_t>("tokenizer.ggml.eos_token_id"), 50256u);
}

TEST(GgufWriter, RejectsBadInput) {
    gguf_writer w;
    auto t = tensor::empty(dtype::f32, {4});
    w.add_tensor("a", t);
    EXPECT_THROW(w.add_tensor("a", t), error);
    EXPECT_THROW(w.add_tensor(std::string(64, 'x'), t), error);
    EXPECT_THROW(w.add_tensor("", t), error);
    EXPECT_THROW(w.add_tensor("empty", tensor()), error);
    EXPECT_THROW(w.set_alignment(64), error);  // after a tensor
    EXPECT_THROW(w.set("general.alignment", std::uint64_t{32}), error);
    EXPECT_THROW(w.set("", 1), error);
    gguf_writer w2;
    EXPECT_THROW(w2.set_alignment(24), error);
    EXPECT_THROW(w2.finish(), error);  // in-memory writer
    w2.finish_to_memory();
    EXPECT_THROW(w2.finish_to_memory(), error);
    EXPECT_THROW(gguf_writer("/nonexistent/dir/x.gguf"), io_error);
}

// ---- `minigpt info` ----

TEST(InfoCommand, PrintsGgufAndLlama2c) {
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "minigpt tool not built";
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    std::string out;
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " info -m " + test::shared_path("models/stories260K.gguf") + " 2>&1", &out), 0) << out;
    EXPECT_NE(out.find("GGUF V3, 19 key-value pairs, 48 tensors"), std::string::npos) << out;
    EXPECT_NE(out.find("llama.block_count u32              = 5"), std::string::npos) << out;
    EXPECT_NE(out.find("tokenizer.ggml.tokens arr[str,512]     = [\"<unk>\", \"<s>\""), std::string::npos) << out;
    EXPECT_NE(out.find("blk.4.ffn_down.weight f32   (64, 172)"), std::string::npos) << out;
    EXPECT_NE(out.find("type   f32:   48 tensors"), std::string::npos) << out;
    // 260032 shared-model parameters + the separate (512, 64) output matrix.
    EXPECT_NE(out.find("parameters  = 292800"), std::string::npos) << out;
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " info " + test::shared_path("models/stories260K.bin") + " 2>&1", &out), 0) << out;
    EXPECT_NE(out.find("n_kv_heads = 4"), std::string::npos) << out;
    EXPECT_NE(out.find("hidden_dim = 172"), std::string::npos) << out;
    EXPECT_NE(out.find("parameters  = 260032"), std::string::npos) << out;
    EXPECT_NE(test::run(std::string(MINIGPT_TOOL) + " info -m /nonexistent.gguf 2>&1", &out), 0);
    EXPECT_NE(out.find("/nonexistent.gguf"), std::string::npos) << out;
}
