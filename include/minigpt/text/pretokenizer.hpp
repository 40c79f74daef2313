// Pre-tokenizers of byte-level BPE vocabularies: `tokenizer.ggml.pre` names -> how text is cut
// into words before merging, following llama.cpp (src/llama-vocab.cpp, src/unicode.cpp).
//
// llama.cpp gives each pre-tokenizer a list of regexes. The text starts as one chunk; each regex in
// turn cuts every chunk into its matches and the gaps between them (both kept), so later regexes
// only refine earlier cuts. The regexes are llama.cpp's adapted ones (e.g. `(?i:'s|...)` written as
// `'[sS]|...` because std::regex has no inline flags), run by unicode::regex with llama.cpp's
// text mapping. The GPT-2 regex goes through the hand-written scanner in unicode_pretokenize.hpp,
// as llama.cpp sends it to its own hand-written scanner; the two are checked against each other in
// the tests.
//
// Flags that come with a name: `ignore_merges` (a word that is itself a token is emitted whole,
// without merging: llama3, tekken), `add_bos` (llama3, tekken, chameleon turn BOS on by default),
// `no_bos` (chatglm-bpe has none). Names llama.cpp maps to pre-tokenizers that need code beyond a
// regex (kimi-k2, afmoe, superbpe) and unknown names are refused with an error naming them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/text/regex.hpp"
#include "minigpt/text/unicode_pretokenize.hpp"
#include "minigpt/text/utf8.hpp"

namespace minigpt::unicode {

namespace pre_regex {
inline constexpr std::string_view gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
inline constexpr std::string_view llama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline constexpr std::string_view qwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// Cased letters as code points (written as escapes: an editor's Unicode normalisation would turn
// e.g. U+2126 OHM SIGN into U+03A9 and change the ranges).
inline constexpr std::string_view deepseek_letters =
    "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF"
    "\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5"
    "\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA"
    "\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45"
    "\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE"
    "\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102"
    "\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"
    "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3"
    "\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06"
    "\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3"
    "\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF"
    "\U0001E900-\U0001E943]+";
inline constexpr std::string_view poro = " ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+";
inline constexpr std::string_view tekken =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline constexpr std::string_view gpt4o =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline constexpr std::string_view deepseek3 =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
inline constexpr std::string_view bailingmoe =
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+";
inline constexpr std::string_view seed_coder =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
}  // namespace pre_regex

// What a tokenizer.ggml.pre name means (see the header comment).
struct pre_spec {
    std::string kind;                        // llama.cpp's LLAMA_VOCAB_PRE_TYPE_* (lower case) or the name
    std::vector<std::string_view> regexes;   // applied in order
    bool ignore_merges = false;
    bool add_bos = false;                    // turns add_bos on (a GGUF key may still turn it off)
    bool no_bos = false;                     // the vocabulary has no BOS token
};

// The pre-tokenizer for `name` (tokenizer.ggml.pre; "" when the key is absent, which llama.cpp
// treats as "default"). Throws minigpt::error naming an unknown or unsupported name.
inline pre_spec pre_spec_for(std::string_view name) {
    using namespace pre_regex;
    auto is = [&](std::initializer_list<std::string_view> names) {
        return std::find(names.begin(), names.end(), name) != names.end();
    };
    if (name.empty() || name == "default")
        return {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", gpt2, "\\p{N}+", "[0-9][0-9][0-9]"}};
    if (is({"llama3", "llama-v3", "llama-bpe", "falcon3"})) return {"llama3", {llama3}, true, true};
    if (is({"dbrx"})) return {"dbrx", {llama3}};
    if (is({"smaug-bpe"})) return {"smaug", {llama3}};
    if (is({"deepseek-llm"}))
        return {"deepseek-llm", {"[\r\n]", deepseek_letters, "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+", "\\s+$", "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+", "\\p{N}+"}};
    if (is({"deepseek-v3"})) return {"deepseek3-llm", {"\\p{N}{1,3}", "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+", deepseek3}};
    if (is({"hunyuan-dense"})) return {"hunyuan-dense", {"\\p{N}{1,3}", "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+", deepseek3}};
    if (is({"deepseek-coder"})) return {"deepseek-coder", {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+", "\\p{N}"}};
    if (is({"falcon"})) return {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", gpt2, "[0-9][0-9][0-9]"}};
    if (is({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"}))
        return {std::string(name), {"\\p{N}", gpt2}};
    if (is({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code",
            "roberta-bpe", "a.x-4.0", "mellum", "exaone4", "mpt", "olmo", "jais", "trillion", "granite-docling"}))
        return {std::string(name), {gpt2}};
    if (is({"qwen2", "deepseek-r1-qwen", "kormo", "megrez", "stablelm2", "hunyuan", "grok-2"})) return {std::string(name), {qwen2}};
    if (is({"poro-chat", "bloom", "gpt3-finnish"})) return {std::string(name), {poro}};
    if (is({"chatglm-bpe", "glm4"})) {
        pre_spec s{"chatglm4", {llama3}};
        s.no_bos = true;
        return s;
    }
    if (is({"viking"})) return {"viking", {poro, "\\p{N}"}};
    if (is({"tekken"})) return {"tekken", {tekken}, true, true};
    if (is({"chameleon"}))
        return {"chameleon",
                {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
                 "[\\p{P}!-/:-@\\[-`{-~]", gpt2},
                false,
                true};
    if (is({"gpt-4o", "llama4", "minimax-m2"})) return {std::string(name), {gpt4o}};
    if (is({"bailingmoe", "bailingmoe2", "llada-moe"})) return {"bailingmoe", {bailingmoe}};
    if (is({"seed-coder"})) return {"seed-coder", {seed_coder}};
    if (is({"kimi-k2", "afmoe", "superbpe"}))
        throw error("tokenizer: pre-tokenizer '" + std::string(name) +
                    "' needs llama.cpp's hand-written splitter, which minigpt does not implement");
    throw error("tokenizer: unknown pre-tokenizer '" + std::string(name) + "' (tokenizer.ggml.pre)");
}

// A compiled pre-tokenizer: splits text into the words that byte-level BPE merges within.
class pretokenizer {
public:
    pretokenizer() = default;

    // use_scanner = false runs the GPT-2 regex through the regex engine too (for testing one
    // implementation against the other).
    explicit pretokenizer(const pre_spec& spec, bool use_scanner = true) {
        for (const auto r : spec.regexes) {
            if (use_scanner && r == pre_regex::gpt2) steps_.push_back({nullptr, true});
            else steps_.push_back({std::make_shared<const regex>(r), false});
        }
    }

    // The GPT-2 split alone: the hand-written scanner straight over the bytes.
    bool is_gpt2_only() const { return steps_.size() == 1 && steps_[0].gpt2; }

    // Calls on_piece(std::string_view) for each word of text, in order; the words concatenate to text.
    template <class Fn>
    void split(std::string_view text, Fn&& on_piece) const {
        if (text.empty()) return;
        if (is_gpt2_only()) {
            split_gpt2(text, on_piece);
            return;
        }
        // Code points with their byte offsets; an ill-formed sequence is one U+FFFD (kept as its bytes).
        std::vector<char32_t> cps;          // (n_cps)
        std::vector<std::uint32_t> offset;  // (n_cps + 1) byte offset of each code point
        cps.reserve(text.size());
        offset.reserve(text.size() + 1);
        for (std::size_t i = 0; i < text.size();) {
            const auto d = utf8::decode(text, i);
            cps.push_back(d.state == utf8::status::ok ? d.cp : utf8::k_replacement);
            offset.push_back(static_cast<std::uint32_t>(i));
            i += d.length;
        }
        offset.push_back(static_cast<std::uint32_t>(text.size()));
        std::vector<char32_t> view_plain, view_collapsed;  // (n_cps) each regex's view of the text, built on first use
        std::vector<std::size_t> chunks{0, cps.size()}, next;  // chunk boundaries (code point indices)
        for (const step& s : steps_) {
            next.assign(1, 0);
            for (std::size_t c = 0; c + 1 < chunks.size(); ++c) {
                const std::size_t begin = chunks[c], end = chunks[c + 1];
                if (s.gpt2) {
                    const std::string_view sub = text.substr(offset[begin], offset[end] - offset[begin]);
                    std::size_t bytes = offset[begin];
                    split_gpt2(sub, [&](std::string_view piece) {
                        bytes += piece.size();
                        next.push_back(static_cast<std::size_t>(
                            std::lower_bound(offset.begin() + static_cast<std::ptrdiff_t>(begin), offset.begin() + static_cast<std::ptrdiff_t>(end) + 1, bytes) -
                            offset.begin()));
                    });
                    continue;
                }
                auto& view = s.re->collapsed() ? view_collapsed : view_plain;
                if (view.empty()) {
                    view.resize(cps.size());
                    for (std::size_t i = 0; i < cps.size(); ++i) view[i] = regex::map_char(cps[i], s.re->collapsed());
                }
                std::size_t pos = begin, mb = 0, me = 0;
                while (pos < end && s.re->search(view.data(), begin, end, pos, mb, me)) {
                    if (mb > pos) next.push_back(mb);
                    next.push_back(me);
                    pos = me;
                }
                if (pos < end) next.push_back(end);
            }
            chunks.swap(next);
        }
        for (std::size_t c = 0; c + 1 < chunks.size(); ++c)
            on_piece(text.substr(offset[chunks[c]], offset[chunks[c + 1]] - offset[chunks[c]]));
    }

private:
    struct step {
        std::shared_ptr<const regex> re;  // null for the GPT-2 scanner
        bool gpt2;
    };
    std::vector<step> steps_;
};

}  // namespace minigpt::unicode
