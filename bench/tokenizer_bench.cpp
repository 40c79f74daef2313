// Tokenizer throughput: encode and decode MB/s for GPT-2 (byte-level BPE) and Llama 2
// (SentencePiece) vocabularies from ../shared/vocab, on ~1 MB of generated mixed English/Chinese
// text, plus one short prompt and the time to build a tokenizer from a GGUF file.
//
// The text is generated deterministically: English sentences drawn from ~150 common words (with
// commas, numbers and a few accented words) and Chinese sentences of 8-31 characters drawn from
// 100 frequent characters, one Chinese sentence in four, paragraph breaks in between.
#include <benchmark/benchmark.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <memory>
#include <string>

#include "minigpt/text.hpp"
#include "minigpt/text/pretokenizer.hpp"

namespace {

using namespace minigpt;

// ../shared beside the repository (benchmarks get no MINIGPT_SHARED_DIR definition; CMake passes
// this file's absolute path), or $MINIGPT_SHARED.
std::string shared(const std::string& rel) {
    if (const char* env = std::getenv("MINIGPT_SHARED")) return std::string(env) + "/" + rel;
    return (std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "shared" / rel).string();
}

std::string mixed_text(std::size_t n_bytes) {
    static const char* const words[] = {
        "the", "of", "and", "to", "in", "is", "was", "that", "for", "it", "with", "as", "his", "on", "be", "at", "by",
        "had", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you", "were", "her", "all", "she",
        "there", "would", "their", "we", "him", "been", "has", "when", "who", "will", "more", "no", "if", "out", "so",
        "said", "what", "up", "its", "about", "into", "than", "them", "can", "only", "other", "new", "some", "could",
        "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such", "like", "our", "over", "man",
        "me", "even", "most", "made", "after", "also", "did", "many", "before", "must", "through", "back", "years",
        "where", "much", "your", "way", "well", "down", "should", "because", "each", "just", "those", "people", "Mr",
        "how", "too", "little", "state", "good", "very", "make", "world", "still", "own", "see", "men", "work", "long",
        "get", "here", "between", "both", "life", "being", "under", "never", "day", "same", "another", "know", "while",
        "last", "might", "us", "great", "old", "year", "off", "come", "since", "against", "go", "came", "right", "used",
        "take", "three", "tokenizer", "llama", "transformer", "Zürich", "naïve", "café"};
    static const char32_t han[] = {
        0x7684, 0x4E00, 0x662F, 0x4E86, 0x6211, 0x4E0D, 0x4EBA, 0x5728, 0x4ED6, 0x6709, 0x8FD9, 0x4E2A, 0x4E0A, 0x4EEC,
        0x6765, 0x5230, 0x65F6, 0x5927, 0x5730, 0x4E3A, 0x5B50, 0x4E2D, 0x4F60, 0x8BF4, 0x751F, 0x56FD, 0x5E74, 0x7740,
        0x5C31, 0x90A3, 0x548C, 0x8981, 0x5979, 0x51FA, 0x4E5F, 0x5F97, 0x91CC, 0x540E, 0x81EA, 0x4EE5, 0x4F1A, 0x5BB6,
        0x53EF, 0x4E0B, 0x800C, 0x8FC7, 0x5929, 0x53BB, 0x80FD, 0x5BF9, 0x5C0F, 0x591A, 0x7136, 0x4E8E, 0x5FC3, 0x5B66,
        0x4E48, 0x4E4B, 0x90FD, 0x597D, 0x770B, 0x8D77, 0x53D1, 0x5F53, 0x6CA1, 0x6210, 0x53EA, 0x5982, 0x4E8B, 0x628A,
        0x8FD8, 0x7528, 0x7B2C, 0x6837, 0x9053, 0x60F3, 0x4F5C, 0x79CD, 0x5F00, 0x7F8E, 0x603B, 0x4ECE, 0x65E0, 0x60C5,
        0x5DF1, 0x9762, 0x6700, 0x5973, 0x4F46, 0x73B0, 0x524D, 0x4E9B, 0x6240, 0x540C, 0x65E5, 0x624B, 0x53C8, 0x884C};
    std::uint64_t state = 0x243F6A8885A308D3ull;
    auto next = [&](std::uint32_t m) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<std::uint32_t>(state >> 33) % m;
    };
    std::string out;
    out.reserve(n_bytes + 256);
    while (out.size() < n_bytes) {
        if (next(4) == 0) {
            const std::uint32_t len = 8 + next(24);
            for (std::uint32_t i = 0; i < len; ++i) utf8::append(out, han[next(std::size(han))]);
            out += next(2) ? "\xE3\x80\x82" : "\xEF\xBC\x8C";  // 。 or ，
        } else {
            const std::uint32_t len = 5 + next(15);
            for (std::uint32_t i = 0; i < len; ++i) {
                std::string w = words[next(std::size(words))];
                if (i == 0) w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
                out += w;
                if (next(12) == 0) out += ",";
                if (next(20) == 0) {
                    out += ' ';
                    out += std::to_string(next(10000));
                }
                out += i + 1 < len ? " " : ". ";
            }
        }
        if (next(8) == 0) out += "\n\n";
    }
    return out;
}

const std::string& text_1mb() {
    static const std::string t = mixed_text(1 << 20);
    return t;
}

const std::string k_prompt =
    "You are a helpful assistant. Summarise the following paragraph in one sentence, in English: "
    "今天天气很好，我们去公园散步，看到了很多人在跑步和放风筝。";

// nullptr (and the benchmark skipped) when the vocabulary file is absent.
const tokenizer* vocab(const std::string& name) {
    static std::unique_ptr<tokenizer> gpt2, llama;
    auto& slot = name == "gpt2" ? gpt2 : llama;
    const std::string path = shared(name == "gpt2" ? "vocab/ggml-vocab-gpt-2.gguf" : "vocab/ggml-vocab-llama-spm.gguf");
    if (!slot && std::filesystem::exists(path)) slot = std::make_unique<tokenizer>(tokenizer::from_gguf(io::gguf_file::open(path)));
    return slot.get();
}

void encode(benchmark::State& state, const std::string& name, const std::string& text) {
    const tokenizer* tok = vocab(name);
    if (!tok) return state.SkipWithError("vocabulary file absent");
    std::size_t n_tokens = 0;
    for (auto _ : state) {
        auto ids = tok->encode(text, false);
        n_tokens = ids.size();
        benchmark::DoNotOptimize(ids.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
    state.counters["tokens"] = static_cast<double>(n_tokens);
}

void decode(benchmark::State& state, const std::string& name) {
    const tokenizer* tok = vocab(name);
    if (!tok) return state.SkipWithError("vocabulary file absent");
    const auto ids = tok->encode(text_1mb(), false);
    for (auto _ : state) {
        auto text = tok->decode(ids);
        benchmark::DoNotOptimize(text.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text_1mb().size()));
}

void load(benchmark::State& state, const std::string& rel) {
    if (!std::filesystem::exists(shared(rel))) return state.SkipWithError("vocabulary file absent");
    for (auto _ : state) {
        auto tok = tokenizer::from_gguf(io::gguf_file::open(shared(rel)));
        benchmark::DoNotOptimize(&tok);
    }
}

// Pre-tokenizing alone (the regex engine for all but GPT-2's scanner), words counted.
void pretokenize(benchmark::State& state, const char* pre, bool use_scanner = true) {
    const unicode::pretokenizer p(unicode::pre_spec_for(pre), use_scanner);
    std::size_t n_words = 0;
    for (auto _ : state) {
        n_words = 0;
        p.split(text_1mb(), [&](std::string_view) { ++n_words; });
        benchmark::DoNotOptimize(n_words);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text_1mb().size()));
    state.counters["words"] = static_cast<double>(n_words);
}

void BM_Pretokenize1MB_Gpt2Scanner(benchmark::State& s) { pretokenize(s, "gpt-2"); }
void BM_Pretokenize1MB_Gpt2Regex(benchmark::State& s) { pretokenize(s, "gpt-2", false); }
void BM_Pretokenize1MB_Llama3(benchmark::State& s) { pretokenize(s, "llama-bpe"); }
void BM_Pretokenize1MB_DeepseekLlm(benchmark::State& s) { pretokenize(s, "deepseek-llm"); }
BENCHMARK(BM_Pretokenize1MB_Gpt2Scanner)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Pretokenize1MB_Gpt2Regex)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Pretokenize1MB_Llama3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Pretokenize1MB_DeepseekLlm)->Unit(benchmark::kMillisecond);

void BM_Encode1MB_Gpt2(benchmark::State& s) { encode(s, "gpt2", text_1mb()); }
void BM_Encode1MB_LlamaSpm(benchmark::State& s) { encode(s, "llama", text_1mb()); }
void BM_EncodePrompt_Gpt2(benchmark::State& s) { encode(s, "gpt2", k_prompt); }
void BM_EncodePrompt_LlamaSpm(benchmark::State& s) { encode(s, "llama", k_prompt); }
void BM_Decode1MB_Gpt2(benchmark::State& s) { decode(s, "gpt2"); }
void BM_Decode1MB_LlamaSpm(benchmark::State& s) { decode(s, "llama"); }
void BM_LoadFromGguf_Gpt2(benchmark::State& s) { load(s, "vocab/ggml-vocab-gpt-2.gguf"); }
void BM_LoadFromGguf_LlamaSpm(benchmark::State& s) { load(s, "vocab/ggml-vocab-llama-spm.gguf"); }

BENCHMARK(BM_Encode1MB_Gpt2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Encode1MB_LlamaSpm)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodePrompt_Gpt2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncodePrompt_LlamaSpm)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Decode1MB_Gpt2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decode1MB_LlamaSpm)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LoadFromGguf_Gpt2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LoadFromGguf_LlamaSpm)->Unit(benchmark::kMillisecond);

}  // namespace
