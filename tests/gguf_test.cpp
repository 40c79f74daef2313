// Tests of the GGUF reader (io/gguf.hpp) and of mapped_file; the writer and `minigpt info` are in
// gguf_writer_test.cpp.
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

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "minigpt/io/gguf.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/io/mapped_file.hpp"
#include "gguf_helpers.hpp"
#include "test_data.hpp"

using namespace minigpt;
using namespace minigpt::io;
using namespace minigpt::test;


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

// A file of 2 MiB or more is mapped at a 2 MiB boundary (file offset 0 there keeps file and address
// congruent modulo 2 MiB, so the kernel can map its large page-cache folios with huge pages); the
// bytes read back are the file's, at the start, across the first boundary and at the end.
TEST(MappedFile, LargeFileIsHugePageAligned) {
    const auto dir = test::temp_dir("mapped");
    const auto path = (dir / "large.bin").string();
    const std::size_t n_bytes = (std::size_t(5) << 20) + 777;
    std::vector<unsigned char> bytes(n_bytes);
    for (std::size_t i = 0; i < n_bytes; ++i) bytes[i] = static_cast<unsigned char>(i * 2654435761u >> 13);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(n_bytes));
    {
        auto f = mapped_file::open(path);
        ASSERT_EQ(f->size(), n_bytes);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f->data()) % (std::uintptr_t(2) << 20), 0u);
        EXPECT_EQ(std::memcmp(f->data(), bytes.data(), n_bytes), 0);
    }
    std::filesystem::remove_all(dir);
}

// access_hint::populate faults the whole file in before open returns: mincore then reports every
// page of the mapping resident, without the test touching a byte (the file was evicted from the
// page cache first, so the pages cannot be left over from writing it). Contents as written.
TEST(MappedFile, PopulateFaultsEveryPageIn) {
    const auto dir = test::temp_dir("mapped");
    const auto path = (dir / "populate.bin").string();
    const std::size_t n_bytes = (std::size_t(9) << 20) + 4097;
    std::vector<unsigned char> bytes(n_bytes);
    for (std::size_t i = 0; i < n_bytes; ++i) bytes[i] = static_cast<unsigned char>(i * 2246822519u >> 11);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(n_bytes));
    const int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ::fdatasync(fd);  // dirty pages cannot be dropped
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
    {
        const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        const std::size_t n_pages = (n_bytes + page - 1) / page;
        auto resident_pages = [&](const mapped_file& f) {
            std::vector<unsigned char> vec(n_pages);
            if (::mincore(const_cast<std::byte*>(f.data()), n_bytes, vec.data()) != 0) return std::size_t(0);
            std::size_t n = 0;
            for (unsigned char v : vec) n += v & 1;
            return n;
        };
        auto lazy = mapped_file::open(path);
        const std::size_t before = resident_pages(*lazy);
        auto f = mapped_file::open(path, access_hint::populate);
        EXPECT_EQ(resident_pages(*f), n_pages) << "resident before populating: " << before << " of " << n_pages;
        EXPECT_EQ(std::memcmp(f->data(), bytes.data(), n_bytes), 0);
    }
    std::filesystem::remove_all(dir);
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
    expect_format_error(one_tensor([](image& m) { m.tensor_info("blk.0.ffn_up.weight", {32}, 9, 0); }), "'blk.0.ffn_up.weight' has ggml type 9 (q8_1)");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {32}, 1000, 0); }), "ggml type 1000");
    expect_format_error(one_tensor([](image& m) { m.tensor_info("t", {33, 2}, 8, 0); }), "not a whole number of q8_0 blocks");
    // A Q5_K matrix of a 960-wide model (llama-quantize falls back to Q5_1 for such rows instead).
    expect_format_error(one_tensor([](image& m) { m.tensor_info("blk.0.attn_q.weight", {960, 2}, 13, 0); }),
                        "'blk.0.attn_q.weight': row of 960 elements is not a whole number of q5_k blocks of 256");
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
