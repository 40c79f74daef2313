// In-context learning: builds a few-shot prompt from an instruction, a pool of demonstrations and a
// query; first with every demonstration, then choosing the 3 most similar to the query
// (bag-of-words cosine) and fitting a 60-token budget, and finally with truncation instead of
// dropping. Tokens are counted with a stand-in rule (one per whitespace-separated word); a real
// model's tokenizer count can be passed the same way.
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/text/few_shot.hpp"

namespace {

std::size_t count_words(std::string_view s) {
    std::size_t n = 0;
    bool in_word = false;
    for (char c : s) {
        const bool space = c == ' ' || c == '\n' || c == '\t';
        if (!space && !in_word) ++n;
        in_word = !space;
    }
    return n;
}

std::string list(const std::vector<std::size_t>& v) {
    std::string s;
    for (auto i : v) s += (s.empty() ? "" : ", ") + std::to_string(i);
    return "[" + s + "]";
}

void show(const char* title, const minigpt::few_shot_prompt& p) {
    std::printf("== %s: %zu words; used %s, dropped %s, not selected %s", title, p.n_tokens, list(p.used).c_str(),
                list(p.dropped).c_str(), list(p.not_selected).c_str());
    if (p.truncated) std::printf(", truncated %zu", *p.truncated);
    std::printf("\n%s\n\n", p.text.c_str());
}

}  // namespace

int main() {
    using namespace minigpt;
    const std::vector<demonstration> pool = {
        {"The film was a waste of two hours.", "negative"},
        {"I would happily eat at this restaurant every week.", "positive"},
        {"The plot of the film was dull and predictable.", "negative"},
        {"Great service and friendly staff.", "positive"},
        {"The acting in this film was superb from start to finish.", "positive"},
    };
    const std::string instruction = "Classify the sentiment of each review as positive or negative.";
    const std::string query = "The film had a superb plot but dull acting.";

    few_shot_options o;
    o.count_tokens = count_words;
    show("all demonstrations", build_few_shot(instruction, pool, query, o));

    std::printf("similarity of each demonstration to the query:\n");
    for (std::size_t i = 0; i < pool.size(); ++i)
        std::printf("  %zu: %.4f  %s\n", i, bag_of_words_cosine(pool[i].input, query), pool[i].input.c_str());
    std::printf("\n");

    o.similarity = bag_of_words_cosine;
    o.k = 3;
    o.max_tokens = 60;
    show("3 most similar (most similar last), budget 60", build_few_shot(instruction, pool, query, o));

    o.max_tokens = 45;
    show("same, budget 45 (drop)", build_few_shot(instruction, pool, query, o));
    o.overflow = overflow_policy::truncate;
    show("same, budget 45 (truncate)", build_few_shot(instruction, pool, query, o));

    o.max_tokens = 15;
    try {
        build_few_shot(instruction, pool, query, o);
    } catch (const error& e) {
        std::printf("== budget 15: %s\n", e.what());
    }
    return 0;
}
