// Few-shot (in-context learning) prompts: an instruction, k demonstrations (input -> output) and a
// query, laid out with a configurable format and fitted to a token budget.
//
// Layout, with the default format:
//     {instruction}\n\n Q: {input 1}\nA: {output 1}\n\n ... Q: {query}\nA:
// (blocks joined by `example_separator`; no instruction, no leading separator). The prompt ends
// with the output prefix and no trailing space, since BPE vocabularies attach the space to the
// next word.
// Budget: token counts come from a caller's counting function applied to the whole prompt (counts
// are not additive across block boundaries for real tokenizers). Demonstrations are removed
// lowest-priority first until the prompt fits; the instruction and query are never touched, and if
// they alone exceed the budget the builder throws. Priority: with similarity selection, the least
// similar demonstration goes first; otherwise the one farthest from the query (the earliest).
// With the `truncate` policy the most important removed demonstration is then put back cut at a
// whitespace boundary to the longest piece that still fits.
// Selection: the top-k demonstrations by similarity of their input to the query (bag-of-words
// cosine, or cosine of a caller's embeddings), ties to the earlier demonstration, ordered most
// similar last (nearest the query), most similar first, or as given.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"

namespace minigpt {

struct demonstration {
    std::string input, output;
};

struct few_shot_format {
    std::string input_prefix = "Q: ";
    std::string input_output_separator = "\n";
    std::string output_prefix = "A:";
    std::string output_separator = " ";      // between output_prefix and a demonstration's output
    std::string example_separator = "\n\n";  // between the instruction and every example
};

using token_counter = std::function<std::size_t(std::string_view)>;
using similarity_function = std::function<double(std::string_view, std::string_view)>;
using embedding_function = std::function<std::vector<float>(std::string_view)>;

enum class overflow_policy { drop, truncate };
enum class demo_order { most_similar_last, most_similar_first, as_given };

struct few_shot_options {
    few_shot_format format;
    std::size_t max_tokens = 0;          // 0: no budget
    token_counter count_tokens;          // required when max_tokens > 0
    overflow_policy overflow = overflow_policy::drop;
    std::size_t k = 0;                   // with `similarity`: keep the k most similar (0: all)
    similarity_function similarity;      // empty: no selection, demonstrations in the given order
    demo_order order = demo_order::most_similar_last;
};

struct few_shot_prompt {
    std::string text;
    std::size_t n_tokens = 0;            // count_tokens(text), or 0 without a counter
    std::vector<std::size_t> used;       // demonstration indices in prompt order (a truncated one included)
    std::vector<std::size_t> dropped;    // indices removed to fit the budget (not the truncated one)
    std::vector<std::size_t> not_selected;  // indices left out by top-k selection
    std::optional<std::size_t> truncated;   // index of the demonstration that was cut short
};

// Lower-cased ASCII alphanumeric runs; other bytes separate words.
inline std::vector<std::string> bag_of_words(std::string_view text) {
    std::vector<std::string> words;
    std::string cur;
    for (char c : text) {
        const unsigned char u = static_cast<unsigned char>(c);
        if (std::isalnum(u)) {
            cur += static_cast<char>(std::tolower(u));
        } else if (!cur.empty()) {
            words.push_back(std::move(cur));
            cur.clear();
        }
    }
    if (!cur.empty()) words.push_back(std::move(cur));
    return words;
}

// Cosine of the term-frequency vectors of two texts (0 when either has no words).
inline double bag_of_words_cosine(std::string_view a, std::string_view b) {
    std::map<std::string, double> fa, fb;
    for (auto& w : bag_of_words(a)) fa[w] += 1.0;
    for (auto& w : bag_of_words(b)) fb[w] += 1.0;
    double dot = 0.0, na = 0.0, nb = 0.0;
    for (const auto& [w, x] : fa) {
        na += x * x;
        auto it = fb.find(w);
        if (it != fb.end()) dot += x * it->second;
    }
    for (const auto& [w, y] : fb) nb += y * y;
    if (na == 0.0 || nb == 0.0) return 0.0;
    return dot / (std::sqrt(na) * std::sqrt(nb));
}

// A similarity that is the cosine of the caller's embeddings of both texts (in double).
inline similarity_function embedding_cosine(embedding_function embed) {
    return [embed = std::move(embed)](std::string_view a, std::string_view b) {
        const auto ea = embed(a), eb = embed(b);
        if (ea.size() != eb.size())
            throw shape_error("embedding_cosine: embeddings of different sizes (" + std::to_string(ea.size()) + " and " +
                              std::to_string(eb.size()) + ")");
        double dot = 0.0, na = 0.0, nb = 0.0;
        for (std::size_t i = 0; i < ea.size(); ++i) {
            dot += double(ea[i]) * eb[i];
            na += double(ea[i]) * ea[i];
            nb += double(eb[i]) * eb[i];
        }
        if (na == 0.0 || nb == 0.0) return 0.0;
        return dot / (std::sqrt(na) * std::sqrt(nb));
    };
}

// Replaces each "{name}" in `text` with its value; other braces are left as they are.
inline std::string fill_placeholders(std::string_view text, std::initializer_list<std::pair<std::string_view, std::string_view>> values) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        bool replaced = false;
        if (text[i] == '{') {
            for (const auto& [name, value] : values) {
                if (text.compare(i + 1, name.size(), name) == 0 && i + 1 + name.size() < text.size() &&
                    text[i + 1 + name.size()] == '}') {
                    out += value;
                    i += name.size() + 2;
                    replaced = true;
                    break;
                }
            }
        }
        if (!replaced) out += text[i++];
    }
    return out;
}

namespace detail {

inline std::string render_demo(const few_shot_format& f, const demonstration& d) {
    return f.input_prefix + d.input + f.input_output_separator + f.output_prefix + f.output_separator + d.output;
}

inline std::string render_query(const few_shot_format& f, std::string_view query) {
    return f.input_prefix + std::string(query) + f.input_output_separator + f.output_prefix;
}

inline std::string join_prompt(const few_shot_format& f, std::string_view instruction, const std::vector<std::string>& blocks,
                               const std::string& query_block) {
    std::string out;
    if (!instruction.empty()) out += std::string(instruction) + f.example_separator;
    for (const auto& b : blocks) out += b + f.example_separator;
    out += query_block;
    return out;
}

// Byte offsets where a cut keeps whole words: every position just before a whitespace run.
inline std::vector<std::size_t> word_cut_points(std::string_view s) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < s.size(); ++i)
        if (std::isspace(static_cast<unsigned char>(s[i])) && !std::isspace(static_cast<unsigned char>(s[i - 1])))
            cuts.push_back(i);
    cuts.push_back(s.size());
    return cuts;
}

}  // namespace detail

inline few_shot_prompt build_few_shot(std::string_view instruction, std::span<const demonstration> demos, std::string_view query,
                                      const few_shot_options& options = {}) {
    const auto& f = options.format;
    if (options.max_tokens > 0 && !options.count_tokens)
        throw error("few-shot prompt: max_tokens is " + std::to_string(options.max_tokens) + " but no count_tokens function was given");

    few_shot_prompt result;
    // `chosen` in prompt order; `priority[i]` ranks chosen[i] (higher = kept longer).
    std::vector<std::size_t> chosen(demos.size());
    std::iota(chosen.begin(), chosen.end(), std::size_t{0});
    std::vector<double> score(demos.size(), 0.0);
    if (options.similarity) {
        for (std::size_t i = 0; i < demos.size(); ++i) score[i] = options.similarity(demos[i].input, query);
        std::stable_sort(chosen.begin(), chosen.end(), [&](std::size_t a, std::size_t b) { return score[a] > score[b]; });
        if (options.k > 0 && options.k < chosen.size()) {
            result.not_selected.assign(chosen.begin() + static_cast<std::ptrdiff_t>(options.k), chosen.end());
            std::sort(result.not_selected.begin(), result.not_selected.end());
            chosen.resize(options.k);
        }
        if (options.order == demo_order::most_similar_last) std::reverse(chosen.begin(), chosen.end());
        else if (options.order == demo_order::as_given) std::sort(chosen.begin(), chosen.end());
    }
    // Drop order: positions in `chosen`, first to go first.
    std::vector<std::size_t> drop_order(chosen.size());
    std::iota(drop_order.begin(), drop_order.end(), std::size_t{0});
    if (options.similarity)
        std::stable_sort(drop_order.begin(), drop_order.end(), [&](std::size_t a, std::size_t b) {
            if (score[chosen[a]] != score[chosen[b]]) return score[chosen[a]] < score[chosen[b]];
            return chosen[a] > chosen[b];   // among equals the later demonstration goes first
        });

    const std::string query_block = detail::render_query(f, query);
    std::vector<std::string> blocks_all(chosen.size());
    for (std::size_t i = 0; i < chosen.size(); ++i) blocks_all[i] = detail::render_demo(f, demos[chosen[i]]);
    std::vector<bool> keep(chosen.size(), true);
    std::vector<std::string> override_block(chosen.size());   // a truncated block replaces the full one

    auto assemble = [&]() {
        std::vector<std::string> blocks;
        for (std::size_t i = 0; i < chosen.size(); ++i)
            if (keep[i]) blocks.push_back(override_block[i].empty() ? blocks_all[i] : override_block[i]);
        return detail::join_prompt(f, instruction, blocks, query_block);
    };

    std::string text = assemble();
    if (options.max_tokens > 0) {
        const std::string bare = detail::join_prompt(f, instruction, {}, query_block);
        const std::size_t bare_tokens = options.count_tokens(bare);
        if (bare_tokens > options.max_tokens)
            throw error("few-shot prompt: the instruction and query alone take " + std::to_string(bare_tokens) +
                        " tokens, over the budget of " + std::to_string(options.max_tokens));
        std::size_t next_drop = 0;
        std::optional<std::size_t> last_dropped;
        while (options.count_tokens(text) > options.max_tokens) {
            const std::size_t pos = drop_order[next_drop++];
            keep[pos] = false;
            last_dropped = pos;
            text = assemble();
        }
        if (options.overflow == overflow_policy::truncate && last_dropped) {
            // Longest word-aligned prefix of the block that still fits (token count grows with length).
            const std::size_t pos = *last_dropped;
            const auto cuts = detail::word_cut_points(blocks_all[pos]);
            std::size_t lo = 0, hi = cuts.size();   // answer: number of usable cut points, in [0, cuts.size())
            keep[pos] = true;
            while (lo < hi) {
                const std::size_t mid = (lo + hi + 1) / 2;
                override_block[pos] = blocks_all[pos].substr(0, cuts[mid - 1]);
                if (options.count_tokens(assemble()) <= options.max_tokens) lo = mid;
                else hi = mid - 1;
            }
            if (lo == 0) {
                keep[pos] = false;
                override_block[pos].clear();
            } else {
                override_block[pos] = blocks_all[pos].substr(0, cuts[lo - 1]);
                result.truncated = chosen[pos];
            }
            text = assemble();
        }
        for (std::size_t i = 0; i < next_drop; ++i) {
            const std::size_t pos = drop_order[i];
            if (!keep[pos]) result.dropped.push_back(chosen[pos]);
        }
        std::sort(result.dropped.begin(), result.dropped.end());
    }
    for (std::size_t i = 0; i < chosen.size(); ++i)
        if (keep[i]) result.used.push_back(chosen[i]);
    result.text = std::move(text);
    if (options.count_tokens) result.n_tokens = options.count_tokens(result.text);
    return result;
}

}  // namespace minigpt
