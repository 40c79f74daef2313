// Tests of the GGUF reader and writer (io/gguf.hpp, io/gguf_writer.hpp) and of mapped_file.
//
// References that do not come from the code under test: the llama.cpp-written files in
// ../shared (known model configs, the GPT-2 vocabulary, and their exact bytes: rewriting them
// with gguf_writer must reproduce them byte for byte), the llama2.c checkpoint holding the same
// weights as stories260K.gguf, and GGUF images assembled byte by byte below. Hostile inputs are
// built the same way; every one must throw minigpt::error, never crash (run once by hand under
// valgrind, see docs/gguf.md).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "minigpt/io/gguf.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/io/mapped_file.hpp"
#include "test_data.hpp"

using namespace minigpt;
using namespace minigpt::io;

namespace {

using bytes_ptr = std::shared_ptr<const std::vector<std::byte>>;

// Assembles little-endian GGUF bytes by hand, independently of gguf_writer.
struct image {
    std::vector<std::byte> b;
    template <class T> image& pod(T v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        b.insert(b.end(), p, p + sizeof v);
        return *this;
    }
    image& u32(std::uint32_t v) { return pod(v); }
    image& u64(std::uint64_t v) { return pod(v); }
    image& i64(std::int64_t v) { return pod(v); }
    image& str(std::string_view s) {
        u64(s.size());
        for (char c : s) b.push_back(static_cast<std::byte>(c));
        return *this;
    }
    image& header(std::uint32_t version, std::uint64_t n_tensors, std::uint64_t n_kv) {
        b.insert(b.end(), {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}});
        return u32(version).u64(n_tensors).u64(n_kv);
    }
    image& key(std::string_view k, gguf_type t) { return str(k).u32(static_cast<std::uint32_t>(t)); }
    image& tensor_info(std::string_view name, std::vector<std::int64_t> ne, std::uint32_t type, std::uint64_t offset) {
        str(name).u32(static_cast<std::uint32_t>(ne.size()));
        for (auto d : ne) i64(d);
        return u32(type).u64(offset);
    }
    image& pad_to(std::size_t alignment) {
        while (b.size() % alignment) b.push_back(std::byte{0});
        return *this;
    }
    bytes_ptr ptr() const { return std::make_shared<const std::vector<std::byte>>(b); }
};

bytes_ptr read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto out = std::make_shared<std::vector<std::byte>>(c.size());
    std::memcpy(out->data(), c.data(), c.size());
    return out;
}

// Expects a format_error whose message contains `needle`.
void expect_format_error(const bytes_ptr& bytes, const std::string& needle) {
    try {
        gguf_file::from_memory(bytes, "hostile.gguf");
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const format_error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("hostile.gguf"), std::string::npos) << e.what();
    }
}

// The hand-built file used by several tests: 9 keys of varied types, alignment 64, an f32 (2, 3)
// tensor at data offset 0 and a q8_0 (32) tensor at 64. With trailing_pad=false the file ends
// exactly at the last tensor byte, so every strict prefix is a truncated file.
struct tiny_file {
    image img;
    std::uint64_t data_offset = 0;
};
tiny_file build_tiny(std::uint32_t version, bool trailing_pad) {
    tiny_file t;
    image& m = t.img;
    m.header(version, 2, 9);
    m.key("general.architecture", gguf_type::string).str("tiny");
    m.key("tiny.block_count", gguf_type::uint32).u32(3);
    m.key("tiny.eps", gguf_type::float32).pod(0.5f);
    m.key("tiny.flag", gguf_type::bool_).pod(std::uint8_t{1});
    m.key("tiny.small", gguf_type::int8).pod(std::int8_t{-5});
    m.key("tiny.ids", gguf_type::array).u32(static_cast<std::uint32_t>(gguf_type::uint16)).u64(2).pod(std::uint16_t{1}).pod(std::uint16_t{65535});
    m.key("tiny.nested", gguf_type::array).u32(static_cast<std::uint32_t>(gguf_type::array)).u64(2);
    m.u32(static_cast<std::uint32_t>(gguf_type::int32)).u64(2).pod(std::int32_t{-1}).pod(std::int32_t{2});
    m.u32(static_cast<std::uint32_t>(gguf_type::int32)).u64(0);
    m.key("tiny.words", gguf_type::array).u32(static_cast<std::uint32_t>(gguf_type::string)).u64(2).str("a").str("bc");
    m.key("general.alignment", gguf_type::uint32).u32(64);
    m.tensor_info("w", {3, 2}, 0, 0);
    m.tensor_info("q", {32}, 8, 64);
    m.pad_to(64);
    t.data_offset = m.b.size();
    for (int i = 1; i <= 6; ++i) m.pod(static_cast<float>(i));
    m.pad_to(64);
    m.pod(std::uint16_t{0x3c00});  // q8_0 block: fp16 scale 1.0, then 32 int8 quants 0..31
    for (int i = 0; i < 32; ++i) m.pod(static_cast<std::int8_t>(i));
    if (trailing_pad) m.pad_to(64);
    return t;
}

}  // namespace

// ---- mapped_file ----

TEST(MappedFile, MissingFileNamesPathAndErrno) {
    try {
        mapped_file::open("/nonexistent/minigpt/x.gguf");
        FAIL() << "no error";
    } catch (const io_error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/minigpt/x.gguf"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
    }
}

TEST(MappedFile, EmptyFileAndDirectory) {
    const auto dir = test::temp_dir("mapped");
    const auto empty = (dir / "empty.bin").string();
    std::ofstream(empty).close();
    auto f = mapped_file::open(empty);
    EXPECT_EQ(f->size(), 0u);
    EXPECT_NE(f->data(), nullptr);
    EXPECT_EQ(f->path(), empty);
    EXPECT_THROW(mapped_file::open(dir.string()), io_error);
    EXPECT_THROW(gguf_file::open(empty), format_error);
    std::filesystem::remove_all(dir);
}

TEST(MappedFile, MapsContents) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    auto f = mapped_file::open(test::shared_path("models/stories260K.bin"), access_hint::sequential);
    ASSERT_EQ(f->size(), 1056540u);
    std::int32_t dim;
    std::memcpy(&dim, f->data(), 4);
    EXPECT_EQ(dim, 64);
    f->advise(access_hint::random, 100, 5000);  // any range, even unaligned, must be harmless
}

// ---- reading the llama.cpp-written files in ../shared ----

TEST(GgufShared, Gpt2TinyMatchesKnownConfig) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    auto f = gguf_file::open(test::shared_path("models/gpt2-tiny.gguf"));
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.keys().front(), "general.architecture");
    EXPECT_EQ(f.get<std::string>("general.architecture"), "gpt2");
    EXPECT_EQ(f.type_of("gpt2.block_count"), gguf_type::uint32);
    EXPECT_EQ(f.get<std::int64_t>("gpt2.embedding_length"), 64);
    EXPECT_EQ(f.get<int>("gpt2.block_count"), 2);
    EXPECT_FLOAT_EQ(f.get<float>("gpt2.attention.layer_norm_epsilon"), 1e-5f);
    EXPECT_DOUBLE_EQ(f.get<double>("gpt2.attention.layer_norm_epsilon"), static_cast<double>(1e-5f));
    // GPT-2 layout: 5 global tensors + 12 per block.
    ASSERT_EQ(f.tensors().size(), 5u + 12u * 2u);
    const auto* embd = f.find_tensor("token_embd.weight");
    ASSERT_NE(embd, nullptr);
    EXPECT_EQ(embd->shape, (std::vector<std::int64_t>{50257, 64}));
    EXPECT_EQ(embd->type, dtype::f32);
    EXPECT_EQ(embd->n_bytes, 50257u * 64u * 4u);
    EXPECT_EQ(f.find_tensor("blk.1.attn_qkv.weight")->shape, (std::vector<std::int64_t>{192, 64}));
    EXPECT_EQ(f.find_tensor("blk.1.attn_qkv.bias")->shape, (std::vector<std::int64_t>{192}));
    EXPECT_EQ(f.find_tensor("nope"), nullptr);
    EXPECT_THROW(f.get_tensor("nope"), lookup_error);
    std::uint64_t total = 0, end = 0;
    for (const auto& t : f.tensors()) {
        EXPECT_EQ(t.offset % 32, 0u) << t.name;
        total += t.n_bytes;
        end = std::max(end, t.offset + t.n_bytes);
    }
    EXPECT_EQ(f.data_offset() % 32, 0u);
    EXPECT_LE(f.data_offset() + end, f.file_size());
    EXPECT_GT(f.data_offset() + end + 32, f.file_size());  // only the last tensor's padding follows
    EXPECT_GE(end, total);
    auto tokens = f.get<std::vector<std::string>>("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), 50257u);
    EXPECT_EQ(tokens[198], "\xC4\x8A");  // "Ċ", GPT-2's byte-level stand-in for '\n'
    EXPECT_EQ(f.get<std::int32_t>("tokenizer.ggml.bos_token_id"), 50256);
}

TEST(GgufShared, VocabFiles) {
    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
    auto g = gguf_file::open(test::shared_path("vocab/ggml-vocab-gpt-2.gguf"));
    EXPECT_TRUE(g.tensors().empty());
    EXPECT_EQ(g.get<std::string>("tokenizer.ggml.model"), "gpt2");
    const auto views = g.get_string_views("tokenizer.ggml.tokens");
    ASSERT_EQ(views.size(), 50257u);
    EXPECT_EQ(views[198], "\xC4\x8A");
    EXPECT_EQ(views[0], "!");
    EXPECT_EQ(views[50256], "<|endoftext|>");
    EXPECT_EQ(g.value("tokenizer.ggml.tokens").element(198).as<std::string>(), "\xC4\x8A");
    EXPECT_EQ(g.get<std::vector<std::string>>("tokenizer.ggml.merges").size(), 50000u);
    EXPECT_EQ(g.get<std::vector<std::string>>("tokenizer.ggml.merges")[0], "\xC4\xA0 t");  // "Ġ t"
    EXPECT_EQ(g.value("tokenizer.ggml.tokens").type_label(), "arr[str,50257]");
    EXPECT_EQ(g.value_string("tokenizer.ggml.tokens", 3), "[\"!\", \"\\\"\", \"#\", ... (50254 more)]");

    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
    auto s = gguf_file::open(test::shared_path("vocab/ggml-vocab-llama-spm.gguf"));
    const auto tokens = s.get<std::vector<std::string>>("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), 32000u);
    EXPECT_EQ(tokens[0], "<unk>");
    EXPECT_EQ(tokens[1], "<s>");
    EXPECT_EQ(tokens[3], "<0x00>");
    EXPECT_EQ(s.get<std::vector<float>>("tokenizer.ggml.scores").size(), 32000u);
    const auto types = s.get<std::vector<std::int32_t>>("tokenizer.ggml.token_type");
    EXPECT_EQ(types[0], 2);  // unknown
    EXPECT_EQ(types[1], 3);  // control
    EXPECT_EQ(types[3], 6);  // byte
    EXPECT_TRUE(s.get<bool>("tokenizer.ggml.add_bos_token"));
    EXPECT_FALSE(s.get<bool>("tokenizer.ggml.add_eos_token"));
    EXPECT_EQ(s.get<std::int64_t>("llama.vocab_size"), 32000);
}

TEST(GgufShared, Stories260KWeightsMatchLlama2cBytes) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    auto f = gguf_file::open(test::shared_path("models/stories260K.gguf"));
    EXPECT_EQ(f.get<std::string>("general.architecture"), "llama");
    EXPECT_EQ(f.tensors().size(), 3u + 9u * 5u);
    EXPECT_EQ(f.find_tensor("blk.4.attn_k.weight")->shape, (std::vector<std::int64_t>{32, 64}));
    EXPECT_EQ(f.find_tensor("blk.0.ffn_down.weight")->shape, (std::vector<std::int64_t>{64, 172}));
    // The .bin stores token_embedding_table (512, 64) right after its 28-byte header.
    auto bin = read_file(test::shared_path("models/stories260K.bin"));
    const tensor embd = f.get_tensor("token_embd.weight");
    ASSERT_EQ(embd.shape_string(), "(512, 64)");
    EXPECT_EQ(std::memcmp(embd.raw(), bin->data() + 28, 512 * 64 * 4), 0);
    // rms_att_weight follows: layer 3's attention norm.
    EXPECT_EQ(std::memcmp(f.get_tensor("blk.3.attn_norm.weight").raw(), bin->data() + 28 + 4 * (512 * 64 + 3 * 64), 64 * 4), 0);
    // A u32 "none" id of 0xFFFFFFFF reads as int64 but not as int32.
    EXPECT_EQ(f.get<std::int64_t>("tokenizer.ggml.padding_token_id"), 0xFFFFFFFFll);
    try {
        f.get<std::int32_t>("tokenizer.ggml.padding_token_id");
        FAIL() << "no error";
    } catch (const lookup_error& e) {
        EXPECT_NE(std::string(e.what()).find("does not fit in int32"), std::string::npos) << e.what();
    }
    // The views keep the map alive after the file object is gone.
    tensor kept;
    {
        auto g = gguf_file::open(test::shared_path("models/stories260K.gguf"));
        kept = g.get_tensor("output_norm.weight");
    }
    EXPECT_EQ(std::memcmp(kept.raw(), f.get_tensor("output_norm.weight").raw(), 256), 0);
}

// Rewriting a llama.cpp-written file (all metadata copied, every tensor re-added) must reproduce
// it byte for byte: the writer follows gguf.c's layout exactly.
TEST(GgufShared, WriterReproducesLlamaCppFilesExactly) {
    for (const char* rel : {"models/stories260K.gguf", "models/gpt2-tiny.gguf", "vocab/ggml-vocab-llama-spm.gguf"}) {
        if (!test::shared_exists(rel)) GTEST_SKIP() << rel << " absent";
        const auto orig = read_file(test::shared_path(rel));
        auto f = gguf_file::open(test::shared_path(rel));
        gguf_writer w;
        w.copy_metadata_from(f);
        for (const auto& t : f.tensors()) w.add_tensor(t.name, f.get_tensor(t.name));
        const auto out = w.finish_to_memory();
        ASSERT_EQ(out.size(), orig->size()) << rel;
        EXPECT_TRUE(std::memcmp(out.data(), orig->data(), out.size()) == 0) << rel;
    }
}

// A 4 GiB tensor followed by another one past the 4 GiB mark, in a sparse file: 64-bit offsets
// work and opening maps the file without reading (or allocating) the data.
TEST(GgufShared, SparseMultiGigabyteFile) {
    const auto dir = test::temp_dir("gguf-big");
    const auto path = (dir / "big.gguf").string();
    image m;
    m.header(3, 2, 1).key("general.architecture", gguf_type::string).str("big");
    m.tensor_info("huge", {1 << 20, 1 << 10}, 0, 0);             // (1024, 1048576) f32 = 4 GiB
    m.tensor_info("after", {8}, 0, std::uint64_t(1) << 32);
    m.pad_to(32);
    const std::uint64_t data_offset = m.b.size();
    {
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(m.b.data()), static_cast<std::streamsize>(m.b.size()));
    }
    const float marker = 42.0f;
    std::filesystem::resize_file(path, data_offset + (std::uint64_t(1) << 32) + 32);
    {
        std::fstream io(path, std::ios::binary | std::ios::in | std::ios::out);
        io.seekp(static_cast<std::streamoff>(data_offset + (std::uint64_t(1) << 32) + 4));
        io.write(reinterpret_cast<const char*>(&marker), 4);
    }
    auto f = gguf_file::open(path);
    EXPECT_EQ(f.file_size(), data_offset + (std::uint64_t(1) << 32) + 32);
    const auto huge = f.get_tensor("huge");
    EXPECT_EQ(huge.shape_string(), "(1024, 1048576)");
    EXPECT_EQ(huge.row<float>(1023)[(1 << 20) - 1], 0.0f);
    const auto after = f.get_tensor("after");
    EXPECT_EQ(after.raw() - huge.raw(), std::int64_t(1) << 32);
    EXPECT_EQ(after.data<float>()[1], 42.0f);
    std::filesystem::remove_all(dir);
}

// ---- hand-built images ----

TEST(GgufImage, HandBuiltFileParses) {
    for (std::uint32_t version : {2u, 3u}) {
        const auto t = build_tiny(version, true);
        const auto bytes = t.img.ptr();
        auto f = gguf_file::from_memory(bytes, "tiny.gguf");
        EXPECT_EQ(f.version(), version);
        EXPECT_EQ(f.alignment(), 64u);
        EXPECT_EQ(f.data_offset(), t.data_offset);
        EXPECT_EQ(f.keys(), (std::vector<std::string>{"general.architecture", "tiny.block_count", "tiny.eps", "tiny.flag",
                                                      "tiny.small", "tiny.ids", "tiny.nested", "tiny.words", "general.alignment"}));
        EXPECT_EQ(f.get<std::string>("general.architecture"), "tiny");
        EXPECT_EQ(f.get<std::uint8_t>("tiny.block_count"), 3);
        EXPECT_EQ(f.get<float>("tiny.eps"), 0.5f);
        EXPECT_TRUE(f.get<bool>("tiny.flag"));
        EXPECT_EQ(f.get<int>("tiny.small"), -5);
        EXPECT_THROW(f.get<unsigned>("tiny.small"), lookup_error);  // -5 does not fit
        EXPECT_EQ(f.get<std::vector<std::uint16_t>>("tiny.ids"), (std::vector<std::uint16_t>{1, 65535}));
        EXPECT_EQ(f.get<std::vector<std::int64_t>>("tiny.ids"), (std::vector<std::int64_t>{1, 65535}));
        EXPECT_THROW(f.get<std::vector<std::int8_t>>("tiny.ids"), lookup_error);
        EXPECT_EQ(f.get<std::vector<std::vector<int>>>("tiny.nested"), (std::vector<std::vector<int>>{{-1, 2}, {}}));
        EXPECT_EQ(f.value("tiny.nested").type_label(), "arr[arr,2]");
        EXPECT_EQ(f.value_string("tiny.nested"), "[[-1, 2], []]");
        EXPECT_EQ(f.get<std::vector<std::string>>("tiny.words"), (std::vector<std::string>{"a", "bc"}));
        EXPECT_EQ(f.value("tiny.words").element(1).as<std::string>(), "bc");
        EXPECT_EQ(f.value_string("tiny.eps"), "0.5");
        EXPECT_EQ(f.value_string("tiny.flag"), "true");

        ASSERT_EQ(f.tensors().size(), 2u);
        const auto w = f.get_tensor("w");
        EXPECT_EQ(w.shape_string(), "(2, 3)");
        EXPECT_EQ(w.row<float>(1)[2], 6.0f);
        EXPECT_EQ(w.row<float>(0)[0], 1.0f);
        const auto* q = f.find_tensor("q");
        EXPECT_EQ(q->type, dtype::q8_0);
        EXPECT_EQ(q->offset, 64u);
        EXPECT_EQ(q->n_bytes, 34u);
        const auto qt = f.get_tensor("q");
        EXPECT_EQ(static_cast<const std::byte*>(qt.raw()), bytes->data() + t.data_offset + 64);  // a view, not a copy
        EXPECT_EQ(static_cast<std::int8_t>(qt.raw()[2 + 31]), 31);
    }
}

TEST(GgufImage, LookupErrors) {
    const auto t = build_tiny(3, true);
    auto f = gguf_file::from_memory(t.img.ptr(), "tiny.gguf");
    EXPECT_FALSE(f.has("missing"));
    EXPECT_THROW(f.get<int>("missing"), lookup_error);
    EXPECT_THROW(f.type_of("missing"), lookup_error);
    EXPECT_FALSE(f.find<int>("missing").has_value());
    EXPECT_EQ(f.get_or<int>("missing", 42), 42);
    EXPECT_EQ(f.get_or<int>("tiny.block_count", 42), 3);
    EXPECT_EQ(f.find<std::string>("general.architecture").value(), "tiny");
    try {
        f.get<std::string>("tiny.block_count");
        FAIL() << "no error";
    } catch (const lookup_error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("tiny.gguf"), std::string::npos) << m;
        EXPECT_NE(m.find("tiny.block_count"), std::string::npos) << m;
        EXPECT_NE(m.find("u32"), std::string::npos) << m;
        EXPECT_NE(m.find("string"), std::string::npos) << m;
    }
    EXPECT_THROW(f.find<float>("tiny.block_count"), lookup_error);  // present but mistyped
    EXPECT_THROW(f.get<bool>("tiny.small"), lookup_error);
    EXPECT_THROW(f.get<std::vector<int>>("tiny.small"), lookup_error);
}

// Every strict prefix of a valid file must be rejected with minigpt::error (and never read out of bounds:
// each prefix is its own exactly-sized allocation, so valgrind/ASan see any over-read).
TEST(GgufHostile, TruncatedAtEveryByte) {
    const auto t = build_tiny(3, false);
    const auto& full = t.img.b;
    ASSERT_NO_THROW(gguf_file::from_memory(t.img.ptr(), "full"));
    for (std::size_t n = 0; n < full.size(); ++n) {
        auto prefix = std::make_shared<const std::vector<std::byte>>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
        EXPECT_THROW(gguf_file::from_memory(prefix, "cut"), error) << "prefix of " << n << " bytes parsed";
    }
}

// Random byte corruptions of a valid file: each must parse or throw minigpt::error (not bad_alloc,
// length_error or a crash); whatever parses must still hand out tensors inside the buffer.
TEST(GgufHostile, RandomCorruptionsParseOrThrow) {
    const auto t = build_tiny(3, false);
    std::mt19937_64 rng(12345);
    int parsed = 0, rejected = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        auto bytes = std::make_shared<std::vector<std::byte>>(t.img.b);
        const int n_flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < n_flips; ++k) {
            const auto at = rng() % bytes->size();
            // Mostly small values and high bytes: they hit lengths, counts and type ids hardest.
            const std::uint64_t r = rng();
            (*bytes)[at] = static_cast<std::byte>(r % 3 == 0 ? 0xff : r % 3 == 1 ? (r >> 8) % 16 : (r >> 8));
        }
        try {
            auto f = gguf_file::from_memory(bytes, "mutant");
            for (const auto& info : f.tensors()) {
                const auto v = f.get_tensor(info.name);
                EXPECT_GE(v.raw(), bytes->data());
                EXPECT_LE(v.raw() + v.n_bytes(), bytes->data() + bytes->size());
            }
            for (const auto& k : f.keys()) (void)f.value_string(k);
            ++parsed;
        } catch (const error&) {
            ++rejected;
        }
    }
    EXPECT_GT(rejected, 0);
    EXPECT_GT(parsed, 0);  // flips inside tensor data or string bytes leave a valid file
}

TEST(GgufHostile, HeaderProblems) {
    image bad_magic;
    bad_magic.b = {std::byte{'G'}, std::byte{'G'}, std::byte{'M'}, std::byte{'L'}};
    bad_magic.u32(3).u64(0).u64(0);
    expect_format_error(bad_magic.ptr(), "not a GGUF file");
    expect_format_error(image().header(1, 0, 0).ptr(), "version 1 is not supported");
    expect_format_error(image().header(4, 0, 0).ptr(), "unsupported GGUF version 4");
    expect_format_error(image().header(0x03000000, 0, 0).ptr(), "big-endian");
    expect_format_error(image().header(3, 0, std::uint64_t(1) << 60).ptr(), "key/value count");
    expect_format_error(image().header(3, std::uint64_t(1) << 60, 0).ptr(), "tensor count");
    // An empty file with no tensors and no keys is valid.
    auto empty = gguf_file::from_memory(image().header(3, 0, 0).ptr(), "e");
    EXPECT_TRUE(empty.keys().empty());
}

TEST(GgufHostile, MetadataProblems) {
    auto one_kv = [](auto&& fill) {
        image m;
        m.header(3, 0, 1);
        fill(m);
        return m.ptr();
    };
    expect_format_error(one_kv([](image& m) { m.str("k").u32(13).u32(0); }), "unknown value type id 13");
    expect_format_error(one_kv([](image& m) { m.key("k", gguf_type::array).u32(99).u64(0); }), "unknown array element type id 99");
    expect_format_error(one_kv([](image& m) { m.key("k", gguf_type::string).u64(std::uint64_t(1) << 63); }), "file truncated");
    expect_format_error(one_kv([](image& m) { m.u64(std::uint64_t(-1)).u64(0); }), "file truncated");  // key length
    expect_format_error(one_kv([](image& m) { m.key("k", gguf_type::array).u32(static_cast<std::uint32_t>(gguf_type::uint64)).u64(std::uint64_t(1) << 62); }),
                        "cannot fit");
    expect_format_error(one_kv([](image& m) { m.key("k", gguf_type::array).u32(static_cast<std::uint32_t>(gguf_type::string)).u64(1000000).u64(1); }),
                        "cannot fit");
    expect_format_error(one_kv([](image& m) { m.key("k", gguf_type::bool_).pod(std::uint8_t{2}); }), "not 0 or 1");
    // 100 levels of arrays nested in arrays: rejected at the depth limit instead of recursing without bound.
    expect_format_error(one_kv([](image& m) {
                            m.key("k", gguf_type::array);
                            for (int i = 0; i < 100; ++i) m.u32(static_cast<std::uint32_t>(gguf_type::array)).u64(1);
                        }),
                        "nested deeper");
    image dup;
    dup.header(3, 0, 2).key("k", gguf_type::uint8).pod(std::uint8_t{1}).key("k", gguf_type::uint8).pod(std::uint8_t{2});
    expect_format_error(dup.ptr(), "duplicate metadata key 'k'");
    for (std::uint32_t a : {0u, 3u, 48u}) {
        image m;
        m.header(3, 0, 1).key("general.alignment", gguf_type::uint32).u32(a);
        expect_format_error(m.ptr(), "power of two");
    }
    image wrong_type;
    wrong_type.header(3, 0, 1).key("general.alignment", gguf_type::uint64).u64(32);
    expect_format_error(wrong_type.ptr(), "expected u32");
}

TEST(GgufHostile, TensorInfoProblems) {
    // One tensor info (filled in by `info`) followed by `data_bytes` zero bytes of data.
    auto one_tensor = [](auto&& info, std::size_t data_bytes = 4096) {
        image m;
        m.header(3, 1, 0);
        info(m);
        m.pad_to(32);
        m.b.resize(m.b.size() + data_bytes);
        return m.ptr();
    };
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {4, 1, 1, 1, 1}, 0, 0); }), "5 dimensions");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {}, 0, 0); }), "0 dimensions");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {4, 0}, 0, 0); }), "must be positive");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {4, -2}, 0, 0); }), "must be positive");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {std::int64_t(1) << 40, std::int64_t(1) << 40}, 0, 0); }), "overflow");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {std::int64_t(1) << 30, std::int64_t(1) << 20}, 0, 0); }), "2^48");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {INT64_MAX, INT64_MAX, 4}, 0, 0); }), "2^48");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {1024, 1024}, 0, 0); }), "extend beyond the end of the file");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {4}, 0, 16); }), "not a multiple of the alignment 32");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {4}, 0, std::uint64_t(-32)); }), "beyond the end");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("blk.0.ffn_up.weight", {32}, 3, 0); }), "'blk.0.ffn_up.weight' has ggml type 3 (q4_1)");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {32}, 1000, 0); }), "ggml type 1000");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {33, 2}, 8, 0); }), "not a whole number of q8_0 blocks");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("", {4}, 0, 0); }), "empty name");
    image cut;
    cut.header(3, 1, 0).str("t").u32(2).i64(4);  // the second dimension is missing
    expect_format_error(cut.ptr(), "tensor count 1 is impossible");

    image dup;
    dup.header(3, 2, 0).tensor_info("t", {4}, 0, 0).tensor_info("t", {4}, 0, 32).pad_to(32);
    dup.b.resize(dup.b.size() + 64);
    expect_format_error(dup.ptr(), "duplicate tensor name 't'");
    image overlap;
    overlap.header(3, 2, 0).tensor_info("a", {16}, 0, 0).tensor_info("b", {4}, 0, 32).pad_to(32);
    overlap.b.resize(overlap.b.size() + 128);
    expect_format_error(overlap.ptr(), "overlaps");
    // general.alignment 64 makes an offset of 32 misaligned.
    image aligned;
    aligned.header(3, 1, 1).key("general.alignment", gguf_type::uint32).u32(64).tensor_info("t", {4}, 0, 32).pad_to(64);
    aligned.b.resize(aligned.b.size() + 128);
    expect_format_error(aligned.ptr(), "not a multiple of the alignment 64");
}

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
