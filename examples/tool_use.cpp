// Tool use: a model answers a question by calling two local tools, a calculator and a keyword search
// over the text files in examples/data/tool_docs/, through minigpt::run_tool_loop.
//
// The model here is a scripted_session playing a planned conversation (no weights needed): it
// searches twice, makes one bad calculator call (the error is fed back as a result, not thrown),
// corrects it and answers. The tools are real: the search reads the files, the calculator parses
// and evaluates the expression with a small recursive-descent parser written below.
// With -m MODEL.gguf the same loop runs on that model instead (model_session), with the same tools.
//
// usage: example_tool_use [--docs DIR] [-m MODEL.gguf]
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/scripted_session.hpp"
#include "minigpt/generate/tool_use.hpp"
#include "minigpt/text/few_shot.hpp"
#if __has_include("minigpt/generate/model_session.hpp")
#include "minigpt/generate/model_session.hpp"
#define MINIGPT_EXAMPLE_HAS_MODEL_SESSION 1
#endif

namespace {

// expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ;
// factor := ('+'|'-') factor | number | '(' expr ')'. Evaluated in double.
class calculator {
public:
    static double evaluate(const std::string& text) {
        calculator c(text);
        const double v = c.expr();
        c.skip_space();
        if (c.pos_ != text.size()) c.fail("unexpected '" + std::string(1, text[c.pos_]) + "'");
        return v;
    }

private:
    explicit calculator(const std::string& text) : text_(text) {}

    [[noreturn]] void fail(const std::string& what) const {
        throw minigpt::error("calculator: " + what + " at position " + std::to_string(pos_) + " of '" + text_ + "'");
    }
    void skip_space() {
        while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
    }
    bool eat(char c) {
        skip_space();
        if (pos_ < text_.size() && text_[pos_] == c) {
            ++pos_;
            return true;
        }
        return false;
    }
    double expr() {
        double v = term();
        for (;;) {
            if (eat('+')) v += term();
            else if (eat('-')) v -= term();
            else return v;
        }
    }
    double term() {
        double v = factor();
        for (;;) {
            if (eat('*')) {
                v *= factor();
            } else if (eat('/')) {
                const double d = factor();
                if (d == 0.0) fail("division by zero");
                v /= d;
            } else {
                return v;
            }
        }
    }
    double factor() {
        if (eat('+')) return factor();
        if (eat('-')) return -factor();
        if (eat('(')) {
            const double v = expr();
            if (!eat(')')) fail("missing ')'");
            return v;
        }
        skip_space();
        const std::size_t start = pos_;
        while (pos_ < text_.size() && (std::isdigit(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '.')) ++pos_;
        if (start == pos_) fail(pos_ < text_.size() ? "unexpected '" + std::string(1, text_[pos_]) + "'" : "missing number");
        const std::string number = text_.substr(start, pos_ - start);
        if (std::count(number.begin(), number.end(), '.') > 1) fail("malformed number '" + number + "'");
        return std::stod(number);
    }

    const std::string& text_;
    std::size_t pos_ = 0;
};

std::string format_number(double v) {
    char buf[64];
    if (std::abs(v) < 1e15 && v == std::floor(v)) std::snprintf(buf, sizeof buf, "%.0f", v);
    else std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

// Keyword search: the line (over all files) containing the most distinct query words; ties go to
// the earlier file (by name) and line.
class doc_search {
public:
    explicit doc_search(const std::filesystem::path& dir) {
        if (!std::filesystem::is_directory(dir)) throw minigpt::io_error("search: no folder " + dir.string());
        std::vector<std::filesystem::path> files;
        for (const auto& e : std::filesystem::directory_iterator(dir))
            if (e.path().extension() == ".txt") files.push_back(e.path());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            std::ifstream in(f);
            for (std::string line; std::getline(in, line);)
                if (!line.empty()) lines_.push_back({f.filename().string(), line});
        }
        if (lines_.empty()) throw minigpt::io_error("search: no .txt files with text in " + dir.string());
    }

    std::string operator()(const std::string& query) const {
        const auto words = minigpt::bag_of_words(query);
        const std::set<std::string> wanted(words.begin(), words.end());
        std::size_t best_score = 0;
        const doc_line* best = nullptr;
        for (const auto& l : lines_) {
            const auto lw = minigpt::bag_of_words(l.text);
            const std::set<std::string> have(lw.begin(), lw.end());
            std::size_t score = 0;
            for (const auto& w : wanted) score += have.count(w);
            if (score > best_score) {
                best_score = score;
                best = &l;
            }
        }
        if (!best) return "no results for '" + query + "'";
        return best->file + ": " + best->text;
    }

private:
    struct doc_line {
        std::string file, text;
    };
    std::vector<doc_line> lines_;
};

}  // namespace

int main(int argc, char** argv) {
    std::filesystem::path docs = std::filesystem::path(__FILE__).parent_path() / "data" / "tool_docs";
    std::string model_path;
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::string(argv[i]) == "--docs") docs = argv[i + 1];
        if (std::string(argv[i]) == "-m") model_path = argv[i + 1];
    }
    try {
        const doc_search search(docs);
        minigpt::tool_registry tools;
        tools.add("search", [&](const std::string& q) { return search(q); }, "keyword search over reference notes");
        tools.add("calc", [](const std::string& e) { return format_number(calculator::evaluate(e)); }, "evaluates + - * / ( )");

        minigpt::tool_use_options options;
        options.markers = {{"[SEARCH]", "[END]", "search"}, {"[CALC]", "[END]", "calc"}};
        options.max_calls = 6;
        options.generation.max_tokens = 64;
        options.generation.sampling = minigpt::sampling_params::greedy();

        const std::string prompt =
            "You can use tools: [SEARCH] words [END] searches notes, [CALC] expression [END] computes.\n"
            "Question: How many times taller than the Eiffel Tower is Mount Everest?\nAnswer:";
        if (!model_path.empty()) {
#ifdef MINIGPT_EXAMPLE_HAS_MODEL_SESSION
            minigpt::model_session model(minigpt::llm::load(model_path));
            model.append(prompt);
            const auto result = minigpt::run_tool_loop(model, tools, options);
            std::printf("== %s\n%s\n\n%zu tool call(s), %zu generation(s)\n", model_path.c_str(), model.transcript().c_str(),
                        result.calls.size(), result.n_generations);
            for (const auto& c : result.calls) std::printf("  %s(%s) -> %s\n", c.tool.c_str(), c.arguments.c_str(), c.result.c_str());
            return 0;
#else
            std::fprintf(stderr, "example_tool_use: -m needs minigpt/generate/model_session.hpp, which this build lacks\n");
            return 1;
#endif
        }
        // The planned model: each step is conditioned on the result it needs having arrived.
        minigpt::scripted_session model{
            {" [SEARCH] how tall is Mount Everest [END]"},
            {" [SEARCH] how tall is the Eiffel Tower [END]", "mount_everest.txt"},
            {" [CALC] 8849 / (330 - 330 [END]", "eiffel_tower.txt"},
            {" [CALC] 8849 / 330 [END]", "missing ')'"},
            {" Mount Everest is about 26.8 times as tall as the Eiffel Tower.", "[RESULT] 26.8152"},
        };
        model.append(prompt);
        const auto result = minigpt::run_tool_loop(model, tools, options);

        std::printf("== transcript ==\n%s\n\n== tool calls ==\n", model.transcript().c_str());
        for (std::size_t i = 0; i < result.calls.size(); ++i) {
            const auto& c = result.calls[i];
            std::printf("%zu. %s(%s) -> %s%s\n", i + 1, c.tool.c_str(), c.arguments.c_str(), c.result.c_str(), c.ok ? "" : "  [error]");
        }
        std::printf("\nfinal answer:%s\n", result.final_text.c_str());
        std::printf("generations: %zu, prompt appended %zu time(s), %zu tokens fed in total (prompt + results)\n",
                    result.n_generations, model.log().appends_containing("Question:"), model.log().n_prefill_tokens);
        return 0;
    } catch (const minigpt::error& e) {
        std::fprintf(stderr, "example_tool_use: %s\n", e.what());
        return 1;
    }
}
