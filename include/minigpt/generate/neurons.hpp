// Recording and explaining feed-forward neurons (the "explain a neuron" loop of Bills et al. 2023,
// "Language models can explain neurons in language models").
//
// record_neurons() runs a text through a model with an inspection hook on one layer
// (model/hooks.hpp) and keeps every neuron's activation at every token: (n_tokens, n_ff). A text
// longer than the context is read in consecutive windows, each from position 0 (BOS only before
// the first). top_activations() ranks one neuron's tokens.
//
// The explanation loop, as the paper describes it:
//  - explainer_prompt(): the top-activating records written as "token<tab>activation" lines with
//    activations scaled to integers 0..10 (10 = the neuron's maximum), then "Explanation of neuron
//    1 behavior: the main thing this neuron does is find" for an explainer model to complete;
//  - simulate_activations(): the "all at once" simulator: one prompt holding the explanation and
//    every token of a text as "token<tab>?" lines; at each "?" the simulator model's next-token
//    distribution restricted to the number tokens 0..10 gives the prediction, their expected
//    value (the paper reads the same distribution at its "unknown" placeholder);
//  - correlation(): the score, Pearson's r between true and simulated activations.
// Prompts are cut to fit the models' contexts (fewer records; the simulation in windows of
// tokens), since the default models are tiny.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/generation.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/hooks.hpp"
#include "minigpt/text/tokenizer.hpp"

namespace minigpt {

struct neuron_record {
    std::int64_t layer = 0;
    std::int64_t n_ff = 0;
    std::vector<std::int32_t> ids;   // (n_tokens) the text's tokens (BOS included when added)
    std::vector<float> acts;         // (n_tokens, n_ff) feed-forward activations of `layer`

    std::int64_t n_tokens() const noexcept { return static_cast<std::int64_t>(ids.size()); }
    float at(std::int64_t t, std::int64_t neuron) const { return acts[static_cast<std::size_t>(t * n_ff + neuron)]; }
    // (n_tokens) one neuron's activation at every token.
    std::vector<float> neuron(std::int64_t j) const {
        check_neuron(j);
        std::vector<float> out(ids.size());
        for (std::int64_t t = 0; t < n_tokens(); ++t) out[static_cast<std::size_t>(t)] = at(t, j);
        return out;
    }
    void check_neuron(std::int64_t j) const {
        if (j < 0 || j >= n_ff) throw error("neuron " + std::to_string(j) + " out of range [0, " + std::to_string(n_ff) + ")");
    }
};

struct record_params {
    std::int64_t n_ctx = 0;   // window length in tokens; 0: the model's training context (at most 4096)
    int n_threads = 0;
    bool add_bos = true;      // when the vocabulary wants it
};

// Every feed-forward activation of `layer` at every token of `ids`.
inline neuron_record record_neurons(const std::shared_ptr<const model>& m, std::vector<std::int32_t> ids, std::int64_t layer,
                                    const record_params& p = {}) {
    const auto& c = m->config();
    if (layer < 0 || layer >= c.n_layer)
        throw error("record_neurons: layer " + std::to_string(layer) + " out of range [0, " + std::to_string(c.n_layer) + ")");
    if (ids.empty()) throw error("record_neurons: the text has no tokens");
    neuron_record r;
    r.layer = layer;
    r.n_ff = c.n_ff;
    r.ids = std::move(ids);
    r.acts.reserve(checked_mul(r.ids.size(), static_cast<std::size_t>(c.n_ff), "neuron record size"));
    context ctx(m, {.n_ctx = p.n_ctx, .n_threads = p.n_threads});
    inspection_hooks h;
    h.layers = {layer};
    h.on_ffn_activation = [&r](const hook_site&, std::span<float> a) { r.acts.insert(r.acts.end(), a.begin(), a.end()); };
    ctx.set_hooks(std::move(h));
    const std::span<const std::int32_t> all(r.ids);
    for (std::size_t done = 0; done < all.size();) {
        const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(ctx.n_ctx()), all.size() - done);
        ctx.truncate(0);
        ctx.decode(all.subspan(done, n), logits_for::none);
        done += n;
    }
    return r;
}

inline neuron_record record_neurons(const llm& lm, std::string_view text, std::int64_t layer, const record_params& p = {}) {
    return record_neurons(lm.weights, lm.vocab->encode(text, p.add_bos && lm.vocab->add_bos_default()), layer, p);
}

struct top_activation {
    std::int64_t index;   // token index in the record
    float activation;
};

// The k tokens where neuron j activates most, highest first (ties: earlier first).
inline std::vector<top_activation> top_activations(const neuron_record& r, std::int64_t j, std::int64_t k) {
    r.check_neuron(j);
    std::vector<top_activation> all;
    for (std::int64_t t = 0; t < r.n_tokens(); ++t) all.push_back({t, r.at(t, j)});
    const auto n = static_cast<std::size_t>(std::clamp<std::int64_t>(k, 0, r.n_tokens()));
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(), [](const top_activation& a, const top_activation& b) {
        return a.activation > b.activation || (a.activation == b.activation && a.index < b.index);
    });
    all.resize(n);
    return all;
}

// Activations as the paper shows them to the explainer: round(10 * max(a, 0) / max_act), 0..10.
inline int discretize_activation(float a, float max_act) {
    if (!(max_act > 0.0f) || !(a > 0.0f)) return 0;
    return static_cast<int>(std::lround(std::min(10.0, 10.0 * static_cast<double>(a) / max_act)));
}

// Pearson's correlation of x and y (0 when either is constant).
inline double correlation(std::span<const float> x, std::span<const float> y) {
    if (x.size() != y.size() || x.empty()) throw error("correlation: sizes " + std::to_string(x.size()) + " and " + std::to_string(y.size()));
    const double n = static_cast<double>(x.size());
    double mx = 0, my = 0;
    for (std::size_t i = 0; i < x.size(); ++i) mx += x[i] / n, my += y[i] / n;
    double sxy = 0, sxx = 0, syy = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0.0;
}

// A token as a prompt line shows it: its text with tabs and newlines escaped.
inline std::string token_label(const tokenizer& tok, std::int32_t id) {
    std::string out;
    for (char ch : tok.token_to_piece(id)) {
        if (ch == '\n') out += "\\n";
        else if (ch == '\t') out += "\\t";
        else out += ch;
    }
    return out;
}

inline constexpr std::string_view k_explainer_header =
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short document. "
    "Look at the parts of the document the neuron activates for and summarize in a single sentence what the neuron "
    "is looking for.\nThe activation format is token<tab>activation, activations go from 0 to 10.\n\n";
inline constexpr std::string_view k_simulator_header =
    "We're studying neurons in a neural network. Look at an explanation of what the neuron does, and try to predict "
    "its activations on each token. The activation format is token<tab>activation, activations go from 0 to 10.\n\n";
inline constexpr std::string_view k_explanation_lead = "Explanation of neuron 1 behavior: the main thing this neuron does is find";

// The explainer prompt for neuron j: each top record as `context_tokens` tokens up to and including
// the top token, one "token<tab>activation" line each, as many records as fit in `max_tokens`
// tokens of the explainer's tokenizer (at least one; shorter headers when the paper's does not fit).
inline std::string explainer_prompt(const neuron_record& r, const tokenizer& subject_vocab, std::int64_t j, std::int64_t n_records,
                                     std::int64_t context_tokens, const tokenizer& explainer_vocab, std::int64_t max_tokens) {
    const auto top = top_activations(r, j, n_records);
    if (top.empty()) throw error("explainer_prompt: empty record");
    const float max_act = top.front().activation;
    std::vector<std::string> blocks;
    for (const auto& a : top) {
        std::string b = "<start>\n";
        for (std::int64_t t = std::max<std::int64_t>(0, a.index - context_tokens + 1); t <= a.index; ++t)
            b += token_label(subject_vocab, r.ids[static_cast<std::size_t>(t)]) + "\t" + std::to_string(discretize_activation(r.at(t, j), max_act)) + "\n";
        blocks.push_back(b + "<end>\n");
    }
    // Three forms, longest first: the paper's header, a one-line header, the records alone with a short lead.
    auto assemble = [&](int form, std::size_t n_blocks) {
        std::string p = form == 0 ? std::string(k_explainer_header) + "Neuron 1\nActivations:\n"
                        : form == 1 ? std::string("Neuron activations (token<tab>0-10):\n") : std::string();
        for (std::size_t i = 0; i < n_blocks; ++i) p += blocks[i];
        return p + (form < 2 ? "\n" + std::string(k_explanation_lead) : std::string("This neuron finds"));
    };
    auto fits = [&](const std::string& p) {
        return static_cast<std::int64_t>(explainer_vocab.encode(p, explainer_vocab.add_bos_default()).size()) <= max_tokens;
    };
    for (int form = 0; form < 3; ++form) {
        std::size_t n = blocks.size();
        while (n > 1 && !fits(assemble(form, n))) --n;
        if (fits(assemble(form, n))) return assemble(form, n);
    }
    return assemble(2, 1);  // even that does not fit: generating from it will say so
}

// The ids of the tokens "0".."10" (a leading space allowed), -1 where the vocabulary has none.
inline std::vector<std::int32_t> number_tokens(const tokenizer& tok) {
    std::vector<std::int32_t> ids(11, -1);
    for (int pass = 0; pass < 2; ++pass)  // bare numbers first, then " 7"
        for (std::int32_t id = 0; id < tok.n_vocab(); ++id) {
            std::string_view s = tok.token_to_piece(id);
            if (pass == 1) {
                if (s.empty() || s[0] != ' ') continue;
                s.remove_prefix(1);
            }
            if (s.empty() || s.size() > 2 || !std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) continue;
            const int v = std::stoi(std::string(s));
            if (v <= 10 && std::to_string(v) == s && ids[static_cast<std::size_t>(v)] < 0) ids[static_cast<std::size_t>(v)] = id;
        }
    return ids;
}

// The expected value of the number tokens under `logits` (n_vocab): sum_v v p(v) / sum_v p(v), the
// probabilities renormalised over the numbers the vocabulary has.
inline double expected_number(std::span<const float> logits, std::span<const std::int32_t> number_ids) {
    double mx = -INFINITY;
    for (auto id : number_ids) if (id >= 0) mx = std::max(mx, static_cast<double>(logits[static_cast<std::size_t>(id)]));
    double num = 0, den = 0;
    for (std::size_t v = 0; v < number_ids.size(); ++v) {
        if (number_ids[v] < 0) continue;
        const double p = std::exp(static_cast<double>(logits[static_cast<std::size_t>(number_ids[v])]) - mx);
        num += p * static_cast<double>(v);
        den += p;
    }
    return den > 0 ? num / den : 0.0;
}

// The simulator prompt's opening for a context of n_ctx tokens: the paper's header with the
// explanation, or shorter forms when it would leave fewer than min(n_ctx/2, 32) tokens for the
// token lines (the explanation after the lead, then the explanation alone, then nothing).
inline std::string simulator_header(const tokenizer& tok, std::string_view explanation, std::int64_t n_ctx) {
    const std::string e(explanation), lead(k_explanation_lead);
    const std::string tiers[] = {std::string(k_simulator_header) + "Neuron 1\n" + lead + e + "\nActivations:\n<start>\n",
                                 lead + e + "\n<start>\n", e + "\n<start>\n"};
    for (const auto& h : tiers)
        if (static_cast<std::int64_t>(tok.encode(h, tok.add_bos_default()).size()) + std::min<std::int64_t>(n_ctx / 2, 32) <= n_ctx) return h;
    return "<start>\n";
}

// Predicted activations (0..10) of every token of `ids` (labelled with subject_vocab) by the
// simulator model given the explanation: "all at once", in windows that fit its context, each
// window the header then "token<tab>?" lines, the prediction read at each tab.
inline std::vector<float> simulate_activations(const llm& simulator, std::string_view explanation, const tokenizer& subject_vocab,
                                               std::span<const std::int32_t> ids, int n_threads = 0) {
    const tokenizer& tok = *simulator.vocab;
    const auto numbers = number_tokens(tok);
    if (std::none_of(numbers.begin(), numbers.end(), [](std::int32_t id) { return id >= 0; }))
        throw error("simulate_activations: the simulator's vocabulary has no number tokens 0..10");
    context ctx(simulator.weights, {.n_threads = n_threads});
    const bool bos = tok.add_bos_default();
    const std::string header = simulator_header(tok, explanation, ctx.n_ctx());
    std::vector<float> out;
    std::vector<std::int32_t> prompt;
    std::vector<std::int64_t> read_at;  // (tokens of the window) prompt index whose logits predict the activation
    for (std::size_t next = 0; next < ids.size();) {
        prompt = tok.encode(header, bos);
        read_at.clear();
        const std::size_t first = next;
        while (next < ids.size()) {
            const auto line = tok.encode(token_label(subject_vocab, ids[next]) + "\t", false);
            const auto rest = tok.encode("?\n", false);
            if (static_cast<std::int64_t>(prompt.size() + line.size() + rest.size()) > ctx.n_ctx()) break;
            prompt.insert(prompt.end(), line.begin(), line.end());
            read_at.push_back(static_cast<std::int64_t>(prompt.size()) - 1);
            prompt.insert(prompt.end(), rest.begin(), rest.end());
            ++next;
        }
        if (next == first) throw error("simulate_activations: the simulator's context of " + std::to_string(ctx.n_ctx()) + " tokens holds no token line");
        ctx.truncate(0);
        ctx.decode(prompt, logits_for::all);
        for (auto i : read_at) out.push_back(static_cast<float>(expected_number(ctx.logits(i), numbers)));
    }
    return out;
}

}  // namespace minigpt
