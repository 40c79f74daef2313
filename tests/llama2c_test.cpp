// Tests of the llama2.c checkpoint reader (io/llama2c.hpp).
//
// References: the header of ../shared/models/stories260K.bin as documented (dim 64, hidden 172,
// 5 layers, 8 heads, 4 KV heads, vocab 512, seq 512), the same weights as written by llama.cpp's
// converter into stories260K.gguf, and a synthetic checkpoint whose every float is its own index
// in the file, so each tensor element can be checked against an offset computed by hand.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/io/gguf.hpp"
#include "minigpt/io/llama2c.hpp"
#include "test_data.hpp"

using namespace minigpt;
using namespace minigpt::io;

namespace {

using bytes_ptr = std::shared_ptr<const std::vector<std::byte>>;

// A checkpoint image: the 7-int header then n_floats floats whose values are 0, 1, 2, ...
std::vector<std::byte> make_checkpoint(const std::vector<std::int32_t>& header, std::uint64_t n_floats) {
    std::vector<std::byte> b(header.size() * 4 + n_floats * 4);
    std::memcpy(b.data(), header.data(), header.size() * 4);
    for (std::uint64_t i = 0; i < n_floats; ++i) {
        const float v = static_cast<float>(i);
        std::memcpy(b.data() + header.size() * 4 + i * 4, &v, 4);
    }
    return b;
}

bytes_ptr share(std::vector<std::byte> b) { return std::make_shared<const std::vector<std::byte>>(std::move(b)); }

bytes_ptr read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(c.size());
    std::memcpy(out.data(), c.data(), c.size());
    return share(std::move(out));
}

void expect_format_error(const bytes_ptr& bytes, const std::string& needle) {
    try {
        llama2c_checkpoint::from_memory(bytes, "bad.bin");
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const format_error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("bad.bin"), std::string::npos) << e.what();
    }
}

// Tiny unshared model: dim 8, hidden 12, 2 layers, 2 heads (head 4), 1 kv head (kv_dim 4), vocab 10, seq 3.
// Floats, in file order: embd 80, rms_att 16, wq 128, wk 64, wv 64, wo 128, rms_ffn 16, w1 192, w2 192,
// w3 192, rms_final 8, freq_cis_real 6, freq_cis_imag 6, wcls 80: 1172 in all.
const std::vector<std::int32_t> k_tiny_header = {8, 12, 2, 2, 1, -10, 3};
constexpr std::uint64_t k_tiny_floats = 1172;

}  // namespace

TEST(Llama2c, Stories260KHeader) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    auto ck = llama2c_checkpoint::open(test::shared_path("models/stories260K.bin"));
    const auto& c = ck.config;
    EXPECT_EQ(c.dim, 64);
    EXPECT_EQ(c.hidden_dim, 172);
    EXPECT_EQ(c.n_layers, 5);
    EXPECT_EQ(c.n_heads, 8);
    EXPECT_EQ(c.n_kv_heads, 4);
    EXPECT_EQ(c.vocab_size, 512);
    EXPECT_EQ(c.seq_len, 512);
    EXPECT_TRUE(c.shared_classifier);
    EXPECT_EQ(c.head_size(), 8);
    EXPECT_EQ(c.kv_dim(), 32);
    EXPECT_EQ(llama2c_checkpoint::expected_size(c), 1056540u);
    EXPECT_EQ(ck.tensor_names().size(), 1u + 9u * 5u + 1u);
    EXPECT_FALSE(ck.find_tensor("output.weight").has_value());
    EXPECT_THROW(ck.get_tensor("output.weight"), lookup_error);
    EXPECT_EQ(ck.get_tensor("token_embd.weight").shape_string(), "(512, 64)");
    EXPECT_EQ(ck.get_tensor("blk.4.attn_k.weight").shape_string(), "(32, 64)");
    EXPECT_EQ(ck.get_tensor("blk.0.ffn_gate.weight").shape_string(), "(172, 64)");
    EXPECT_EQ(ck.get_tensor("blk.0.ffn_down.weight").shape_string(), "(64, 172)");
    EXPECT_EQ(ck.get_tensor("blk.2.attn_norm.weight").shape_string(), "(64)");
    EXPECT_EQ(ck.get_tensor("output_norm.weight").shape_string(), "(64)");
    // rms_final_weight sits after 28 header bytes and 32768 + 320 + 20480 + 2*10240 + 20480 + 320 + 3*55040 floats.
    const auto bin = read_file(test::shared_path("models/stories260K.bin"));
    const std::size_t final_at = 28 + 4 * (32768 + 320 + 20480 + 2 * 10240 + 20480 + 320 + 3 * 55040);
    EXPECT_EQ(std::memcmp(ck.get_tensor("output_norm.weight").raw(), bin->data() + final_at, 64 * 4), 0);
}

// llama.cpp's converter wrote the same weights into stories260K.gguf (with an explicit output.weight).
TEST(Llama2c, Stories260KMatchesGguf) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    auto ck = llama2c_checkpoint::open(test::shared_path("models/stories260K.bin"));
    auto g = gguf_file::open(test::shared_path("models/stories260K.gguf"));
    int compared = 0;
    for (const auto& name : ck.tensor_names()) {
        const tensor a = ck.get_tensor(name);
        const tensor b = g.get_tensor(name);
        ASSERT_EQ(a.shape_string(), b.shape_string()) << name;
        ASSERT_EQ(b.type(), dtype::f32);
        for (std::int64_t i = 0; i < a.n_elements(); ++i) ASSERT_EQ(a.data<float>()[i], b.data<float>()[i]) << name << "[" << i << "]";
        ++compared;
    }
    EXPECT_EQ(compared, 47);
    const tensor embd = ck.get_tensor("token_embd.weight");
    const tensor out = g.get_tensor("output.weight");
    EXPECT_EQ(std::memcmp(embd.raw(), out.raw(), 512 * 64 * 4), 0);  // the shared classifier
}

TEST(Llama2c, TensorsOutliveTheCheckpoint) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    tensor t;
    {
        auto ck = llama2c_checkpoint::open(test::shared_path("models/stories260K.bin"));
        t = ck.get_tensor("blk.1.attn_q.weight");
    }
    const auto bin = read_file(test::shared_path("models/stories260K.bin"));
    // wq of layer 1: after the header, token embeddings (32768), rms_att (320), layer 0's wq (4096).
    EXPECT_EQ(std::memcmp(t.raw(), bin->data() + 28 + 4 * (32768 + 320 + 4096), 4096 * 4), 0);
}

TEST(Llama2c, SyntheticUnsharedLayout) {
    auto ck = llama2c_checkpoint::from_memory(share(make_checkpoint(k_tiny_header, k_tiny_floats)), "tiny.bin");
    EXPECT_FALSE(ck.config.shared_classifier);
    EXPECT_EQ(ck.config.vocab_size, 10);
    EXPECT_EQ(ck.tensor_names().size(), 1u + 9u * 2u + 2u);
    auto at = [&](const std::string& name, std::int64_t row, std::int64_t col) {
        return ck.get_tensor(name).row<float>(row)[col];
    };
    EXPECT_EQ(at("token_embd.weight", 9, 7), 79.0f);
    EXPECT_EQ(ck.get_tensor("blk.1.attn_norm.weight").data<float>()[3], 80 + 8 + 3);
    EXPECT_EQ(at("blk.0.attn_q.weight", 2, 1), 96 + 2 * 8 + 1);
    EXPECT_EQ(at("blk.1.attn_q.weight", 7, 7), 96 + 64 + 63);
    EXPECT_EQ(ck.get_tensor("blk.1.attn_k.weight").shape_string(), "(4, 8)");
    EXPECT_EQ(at("blk.1.attn_k.weight", 0, 0), 224 + 32);
    EXPECT_EQ(at("blk.0.attn_v.weight", 3, 7), 288 + 31);
    EXPECT_EQ(at("blk.1.attn_output.weight", 0, 0), 352 + 64);
    EXPECT_EQ(ck.get_tensor("blk.0.ffn_norm.weight").data<float>()[0], 480);
    EXPECT_EQ(at("blk.1.ffn_gate.weight", 11, 7), 496 + 96 + 95);  // w1
    EXPECT_EQ(ck.get_tensor("blk.0.ffn_down.weight").shape_string(), "(8, 12)");
    EXPECT_EQ(at("blk.0.ffn_down.weight", 1, 0), 688 + 12);       // w2
    EXPECT_EQ(at("blk.1.ffn_up.weight", 0, 0), 880 + 96);         // w3
    EXPECT_EQ(ck.get_tensor("output_norm.weight").data<float>()[0], 1072);
    EXPECT_EQ(at("output.weight", 0, 0), 1092);                   // after 12 freq_cis floats
    EXPECT_EQ(at("output.weight", 9, 7), 1171);
}

TEST(Llama2c, TruncatedAndTrailing) {
    const auto full = make_checkpoint(k_tiny_header, k_tiny_floats);
    for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{27}}) {
        expect_format_error(share(std::vector<std::byte>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n))), "28-byte header");
    }
    for (std::size_t n : {std::size_t{28}, std::size_t{100}, full.size() - 4, full.size() - 1}) {
        expect_format_error(share(std::vector<std::byte>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n))), "truncated");
    }
    auto longer = full;
    longer.resize(full.size() + 4);
    expect_format_error(share(longer), "trailing data");
}

// Shorter than the 28-byte header but not a cut-off checkpoint: a short text file, or a complete
// header field out of any model's range, is reported as neither format (issue 15's leftover), while
// a real header cut short still reads as truncated (TruncatedAndTrailing above).
TEST(Llama2c, ShortFilesThatAreNotCheckpoints) {
    auto bytes_of = [](const std::string& s) {
        std::vector<std::byte> b(s.size());
        std::memcpy(b.data(), s.data(), s.size());
        return share(std::move(b));
    };
    expect_format_error(bytes_of("hello\n"), "not a GGUF or llama2.c file");
    expect_format_error(bytes_of("hello\n"), "short text file");
    expect_format_error(bytes_of("a 27-byte note, not a model"), "not a GGUF or llama2.c file");
    std::vector<std::int32_t> wild = {64, 1 << 30, 5};  // hidden_dim far outside any model; binary, not text
    std::vector<std::byte> b(wild.size() * 4);
    std::memcpy(b.data(), wild.data(), b.size());
    expect_format_error(share(b), "not a GGUF or llama2.c file");
    // The first 12 bytes of a real header are a truncated checkpoint, not another format.
    std::vector<std::int32_t> real = {64, 172, 5};
    std::memcpy(b.data(), real.data(), b.size());
    expect_format_error(share(b), "28-byte header");
}

TEST(Llama2c, CorruptHeaders) {
    auto with = [](int field, std::int32_t value) {
        auto h = k_tiny_header;
        h[static_cast<std::size_t>(field)] = value;
        return share(make_checkpoint(h, k_tiny_floats));
    };
    expect_format_error(with(0, -8), "dim is -8");
    expect_format_error(with(1, 0), "hidden_dim is 0");
    expect_format_error(with(2, 0), "n_layers is 0");
    expect_format_error(with(3, 0), "n_heads is 0");
    expect_format_error(with(4, -1), "n_kv_heads is -1");
    expect_format_error(with(5, 0), "vocab_size is 0");
    expect_format_error(with(5, INT32_MIN), "vocab_size is");
    expect_format_error(with(6, 0), "seq_len is 0");
    expect_format_error(with(3, 3), "not divisible by n_heads 3");
    expect_format_error(with(4, 3), "not a multiple of n_kv_heads 3");
    expect_format_error(with(0, 6), "head size 3 is odd");
    // Flipping the classifier sign changes the expected size by exactly one (vocab, dim) table.
    expect_format_error(with(5, 10), "sign of vocab_size looks wrong");
    // Fields far beyond any model's: the file is not a checkpoint at all (and their product would overflow).
    expect_format_error(share(make_checkpoint({1 << 30, 1 << 30, 1 << 30, 2, 1, 10, 3}, 0)), "not a GGUF or llama2.c file");
    auto magic = make_checkpoint(k_tiny_header, k_tiny_floats);
    std::memcpy(magic.data(), "ak42", 4);
    expect_format_error(share(magic), "magic 'ak42'");
    std::memcpy(magic.data(), "GGUF", 4);
    expect_format_error(share(magic), "GGUF file");
}

TEST(Llama2c, MissingFile) {
    EXPECT_THROW(llama2c_checkpoint::open("/nonexistent/model.bin"), io_error);
}
