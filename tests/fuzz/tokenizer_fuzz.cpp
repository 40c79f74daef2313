// libFuzzer harness: the tokenizers on arbitrary bytes. Input: byte 0 picks the vocabulary
// (SentencePiece-style "llama" or byte-level BPE "gpt2", both built here, with special tokens),
// byte 1 the flags, the rest is text. Checked: encode with and without special-token parsing never
// throws (documented), decode and the streaming decoder agree on every id list, and ids read from
// the raw bytes (many out of range) are either decoded or rejected with minigpt::error.
// Seeds: corpus/tokenizer.
#include <cstring>

#include "fuzz_common.hpp"
#include "minigpt/text/bpe_tokenizer.hpp"
#include "minigpt/text/tokenizer.hpp"
#include "minigpt/text/utf8.hpp"
#include "minigpt/text/vocab.hpp"

using namespace minigpt;

namespace {

void add(vocab_data& v, std::string text, float score, token_type type = token_type::normal) {
    v.tokens.push_back(std::move(text));
    v.scores.push_back(score);
    v.types.push_back(type);
}

const tokenizer& spm() {
    static const tokenizer t = [] {
        vocab_data v = synthetic_vocab(259);
        const char* pieces[] = {"\xE2\x96\x81", "\xE2\x96\x81t", "he", "\xE2\x96\x81the", "\xE2\x96\x81" "a", "ab", "abc",
                                "\xE2\x96\x81\xE2\x96\x81", "\xC3\xA9", "caf", "\xE2\x96\x81" "caf\xC3\xA9", "\xF0\x9F\x98\x80"};
        float score = -1.0f;
        for (const char* p : pieces) add(v, p, score -= 0.5f);
        add(v, "<|im_start|>", 0.0f, token_type::control);
        add(v, "<|im_end|>", 0.0f, token_type::control);
        add(v, "<tool>", 0.0f, token_type::user_defined);
        add(v, "[unused]", 0.0f, token_type::unused);
        return tokenizer(std::move(v));
    }();
    return t;
}

const tokenizer& bpe() {
    static const tokenizer t = [] {
        vocab_data v;
        v.model = "gpt2";
        v.pre = "gpt-2";
        for (int b = 0; b < 256; ++b) v.tokens.push_back(utf8::encode(text_detail::gpt2_byte_to_cp()[static_cast<std::size_t>(b)]));
        const std::string G = "\xC4\xA0";  // U+0120, GPT-2's spelling of a space byte
        const std::pair<std::string, std::string> merges[] = {{G, "t"}, {"h", "e"}, {G + "t", "he"}, {"i", "n"}, {G, "a"},
                                                              {"e", "r"}, {G + "a", "n"}, {"in", "g"}, {G, G}};
        for (const auto& [l, r] : merges) {
            v.merges.push_back(l + " " + r);
            v.tokens.push_back(l + r);
        }
        v.types.assign(v.tokens.size(), token_type::normal);
        v.tokens.push_back("<|endoftext|>");
        v.types.push_back(token_type::control);
        v.tokens.push_back("<|fim|>");
        v.types.push_back(token_type::user_defined);
        v.bos_id = v.eos_id = static_cast<std::int32_t>(v.tokens.size()) - 2;
        v.add_bos = false;
        v.add_space_prefix = false;
        return tokenizer(std::move(v));
    }();
    return t;
}

void check_decoders_agree(const tokenizer& tok, std::span<const std::int32_t> ids) {
    std::string whole;
    bool whole_ok = false;
    fuzz::guarded("decode", [&] {
        whole = tok.decode(ids);
        whole_ok = true;
    });
    std::string streamed;
    bool stream_ok = false;
    fuzz::guarded("stream decode", [&] {
        stream_decoder d(tok);
        for (std::int32_t id : ids) streamed += d.push(id);
        streamed += d.flush();
        stream_ok = true;
    });
    fuzz::fuzz_check(whole_ok == stream_ok, "decode and stream_decoder disagree on whether the ids are valid");
    if (whole_ok) fuzz::fuzz_check(whole == streamed, "stream_decoder's pieces differ from decode()");
}

}  // namespace

MINIGPT_FUZZ_TARGET(tokenizer) {
    if (size < 2) return 0;
    const tokenizer& tok = (data[0] & 1) ? bpe() : spm();
    const bool add_bos = (data[1] & 1) && tok.bos() >= 0;
    const std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
    for (bool special : {false, true}) {
        std::vector<std::int32_t> ids;
        try {
            ids = tok.encode(text, add_bos, special);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "FUZZ FINDING: encode threw (documented never to): %s\n", e.what());
            std::abort();
        }
        for (std::int32_t id : ids) fuzz::fuzz_check(id >= 0 && id < tok.n_vocab(), "encode produced an id out of range");
        check_decoders_agree(tok, ids);
    }
    // The text's bytes as little-endian 16-bit ids (sign-extended): ids past n_vocab and negative ones.
    std::vector<std::int32_t> raw;
    for (std::size_t i = 0; i + 1 < text.size(); i += 2)
        raw.push_back(static_cast<std::int16_t>(static_cast<std::uint8_t>(text[i]) | static_cast<std::uint8_t>(text[i + 1]) << 8));
    check_decoders_agree(tok, raw);
    fuzz::guarded("token_to_piece", [&] {
        for (std::int32_t id : raw) (void)tok.token_to_piece(id);
    });
    return 0;
}
