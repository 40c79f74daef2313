// Tool use: generation pauses when the model writes a tool call, the host runs the tool, the result
// is appended to the same session and generation continues.
//
// Two call syntaxes, both detected through stop strings (the closing marker is added to the stop
// strings, so the call is complete when generation pauses):
//   markers  "[SEARCH] query [END]": the tool is the one bound to the opening marker; its argument
//            is the text between the markers, trimmed. Several markers may share a closing one.
//   JSON     "<tool_call>{"name": "calc", "arguments": {"expr": "1+2"}}</tool_call>" (the tags of
//            Qwen / Hermes models, configurable): the tool is "name"; its argument string is the
//            "arguments" object serialised compactly (a string value is passed as it is; absent: {}).
// The tool's result is appended as result_prefix + result + result_suffix (default
// " [RESULT] ... [/RESULT]"). Appending only extends the context: the prefix is never recomputed.
// Failures are results, not exceptions, so the model can read and react to them: an unknown tool,
// malformed JSON, a closing marker with no opening one, or a tool that throws std::exception is
// answered with "error: ..." in the same result wrapper and recorded with ok = false.
// Limits: at most max_calls calls are executed (malformed ones count). The call after that is not
// run; it is answered with an error saying the limit is reached, the tool stop strings are removed,
// and generation continues once more to let the model answer without tools. So the loop makes at
// most max_calls + 2 generate() calls.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/text_session.hpp"

namespace minigpt {

using tool_function = std::function<std::string(const std::string& arguments)>;

class tool_registry {
public:
    tool_registry& add(std::string name, tool_function fn, std::string description = {}) {
        if (name.empty()) throw error("tool_registry: a tool needs a name");
        if (!fn) throw error("tool_registry: tool '" + name + "' has no function");
        tools_[std::move(name)] = {std::move(fn), std::move(description)};
        return *this;
    }
    const tool_function* find(const std::string& name) const {
        auto it = tools_.find(name);
        return it == tools_.end() ? nullptr : &it->second.fn;
    }
    std::vector<std::string> names() const {
        std::vector<std::string> n;
        for (const auto& [name, e] : tools_) n.push_back(name);
        return n;
    }
    // "name: description" lines, for a system prompt.
    std::string describe() const {
        std::string s;
        for (const auto& [name, e] : tools_) s += name + (e.description.empty() ? "" : ": " + e.description) + "\n";
        return s;
    }

private:
    struct entry {
        tool_function fn;
        std::string description;
    };
    std::map<std::string, entry> tools_;
};

struct tool_marker {
    std::string open, close, tool;
};

struct json_call_tags {
    std::string open = "<tool_call>", close = "</tool_call>";
};

struct tool_use_options {
    std::vector<tool_marker> markers = {{"[SEARCH]", "[END]", "search"}};
    std::optional<json_call_tags> json;     // set to also accept JSON function calls
    std::string result_prefix = " [RESULT] ";
    std::string result_suffix = " [/RESULT]";
    std::size_t max_calls = 4;
    generation_options generation;          // for each segment; closing markers are added to its stop strings
};

struct tool_call_record {
    std::string tool;                       // as named by the call ("" if it could not be parsed)
    std::string arguments;
    std::string result;                     // what was appended between the result markers
    bool ok = false;                        // the tool ran and returned
    std::size_t result_offset = 0;          // where the result block starts in tool_loop_result::text
};

struct tool_loop_result {
    std::string text;                       // everything generated and appended during the loop, in order
    std::string final_text;                 // the last generated segment (after the last result)
    std::vector<tool_call_record> calls;
    stop_reason reason = stop_reason::max_tokens;  // why the last segment ended
    bool limit_reached = false;
    std::size_t n_generations = 0;
};

namespace detail {

inline std::string trim_tool_text(std::string_view s) {
    std::size_t b = 0, e = s.size();
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (b < e && space(s[b])) ++b;
    while (e > b && space(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

// The call that `segment` ends with (its closing marker was the stop string), or an error text.
inline tool_call_record parse_tool_call(std::string_view segment, const std::string& close, const tool_use_options& o,
                                        std::string& error_text) {
    tool_call_record call;
    // The last opening marker among those that close with this string.
    std::size_t best = std::string_view::npos;
    const tool_marker* marker = nullptr;
    for (const auto& m : o.markers) {
        if (m.close != close) continue;
        const std::size_t at = segment.rfind(m.open);
        if (at != std::string_view::npos && (best == std::string_view::npos || at > best)) {
            best = at;
            marker = &m;
        }
    }
    bool json = false;
    if (o.json && o.json->close == close) {
        const std::size_t at = segment.rfind(o.json->open);
        if (at != std::string_view::npos && (best == std::string_view::npos || at > best)) {
            best = at;
            json = true;
        }
    }
    if (best == std::string_view::npos) {
        error_text = "error: '" + close + "' without an opening marker before it";
        return call;
    }
    if (!json) {
        call.tool = marker->tool;
        call.arguments = trim_tool_text(segment.substr(best + marker->open.size()));
        return call;
    }
    const std::string body = trim_tool_text(segment.substr(best + o.json->open.size()));
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(body);
    } catch (const nlohmann::json::exception& e) {
        // Not only parse_error: a number beyond double's range (1e400) is an out_of_range.
        call.arguments = body;
        error_text = "error: malformed tool call JSON: " + std::string(e.what());
        return call;
    }
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string() || j["name"].get_ref<const std::string&>().empty()) {
        // An empty name is no call either: the caller would look up tool "" (fuzz_chat_json finding).
        call.arguments = body;
        error_text = "error: a tool call must be a JSON object with a non-empty string \"name\"";
        return call;
    }
    call.tool = j["name"].get<std::string>();
    if (!j.contains("arguments")) call.arguments = "{}";
    else if (j["arguments"].is_string()) call.arguments = j["arguments"].get<std::string>();
    else call.arguments = j["arguments"].dump();
    return call;
}

}  // namespace detail

inline tool_loop_result run_tool_loop(text_session& session, const tool_registry& tools, const tool_use_options& options = {},
                                      const text_callback& on_text = {}) {
    std::vector<std::string> closes;
    auto add_close = [&](const std::string& c) {
        if (c.empty()) throw error("tool use: a closing marker is empty");
        if (std::find(closes.begin(), closes.end(), c) == closes.end()) closes.push_back(c);
    };
    for (const auto& m : options.markers) {
        if (m.open.empty()) throw error("tool use: the opening marker of tool '" + m.tool + "' is empty");
        add_close(m.close);
    }
    if (options.json) {
        if (options.json->open.empty()) throw error("tool use: the JSON call opening tag is empty");
        add_close(options.json->close);
    }
    generation_options g = options.generation;
    const std::vector<std::string> plain_stops = g.stop;
    for (const auto& c : closes)
        if (std::find(g.stop.begin(), g.stop.end(), c) == g.stop.end()) g.stop.push_back(c);

    tool_loop_result result;
    std::size_t n_calls = 0;
    for (;;) {
        const generation_result r = session.generate(g, on_text);
        ++result.n_generations;
        result.text += r.text;
        result.final_text = r.text;
        result.reason = r.reason;
        const bool is_call = r.reason == stop_reason::stop_string && !result.limit_reached &&
                             std::find(closes.begin(), closes.end(), r.stop_string) != closes.end();
        if (!is_call) break;
        result.text += r.stop_string;

        std::string error_text;
        tool_call_record call = detail::parse_tool_call(r.text, r.stop_string, options, error_text);
        if (n_calls >= options.max_calls) {
            error_text = "error: tool call limit of " + std::to_string(options.max_calls) + " reached; answer without tools";
            result.limit_reached = true;
            g.stop = plain_stops;
        } else if (error_text.empty()) {
            const tool_function* fn = tools.find(call.tool);
            if (!fn) {
                std::string known;
                for (const auto& n : tools.names()) known += (known.empty() ? "" : ", ") + n;
                error_text = "error: unknown tool '" + call.tool + "' (available: " + known + ")";
            } else {
                try {
                    call.result = (*fn)(call.arguments);
                    call.ok = true;
                } catch (const std::exception& e) {
                    error_text = "error: tool '" + call.tool + "' failed: " + e.what();
                }
            }
        }
        ++n_calls;
        if (!call.ok) call.result = error_text;
        const std::string block = options.result_prefix + call.result + options.result_suffix;
        call.result_offset = result.text.size();
        session.append(block);
        result.text += block;
        result.calls.push_back(std::move(call));
    }
    return result;
}

}  // namespace minigpt
