// Chat templates: render a conversation (system/user/assistant/tool messages) into the exact prompt
// string an instruction-tuned model was trained on, plus the generation prompt that cues its reply.
//
// Built-in families reproduce the Jinja `chat_template` shipped with each model's
// tokenizer_config.json (rendered as Hugging Face does, trim_blocks + lstrip_blocks), byte for byte:
//   chatml   <|im_start|>role\n...<|im_end|>\n            (Qwen, SmolLM, OpenHermes)
//   llama2   <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s>   (Llama-2-chat)
//   llama3   <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> (Meta-Llama-3-Instruct)
//   mistral  <s> [INST] ... [/INST] ...</s>              (Mistral-7B-Instruct v0.1/v0.2, Mixtral)
//   gemma    <start_of_turn>user\n...<end_of_turn>\n     (Gemma 3; role "assistant" is "model")
//   phi3     <|user|>\n...<|end|>\n<|assistant|>\n       (Phi-3 / Phi-3.5 mini)
//   zephyr   <|user|>\n...</s>\n<|assistant|>\n          (zephyr-7b-beta)
// BOS: the text a template writes for `{{ bos_token }}` at the very start is left out by default,
// because minigpt's tokenizer adds the BOS token itself (llama.cpp strips it for the same reason);
// `add_bos` puts it back. BOS/EOS text inside the history (Llama-2's "</s><s>[INST]") is always
// written, as the template does. Families whose templates never write a BOS ignore `add_bos`.
// Trimming (Jinja `trim`, Python `strip`) removes ASCII whitespace only.
// render() also says which bytes of the prompt are message content (chat_prompt::content): the
// tokenizer recognises control tokens ("<|im_end|>") only in the template's own text, so a message
// that contains such text cannot forge a turn boundary (tokenizer::encode_with_literals).
// A template string is resolved like llama.cpp's llm_chat_detect_template: a known name, else the
// family whose distinctive substrings appear in the Jinja source. A user-defined format (per-role
// prefix/suffix strings with a `{role}` placeholder) covers anything else.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "minigpt/core/error.hpp"
#include "minigpt/text/vocab.hpp"

namespace minigpt {

struct chat_message {
    std::string role;     // "system", "user", "assistant" or "tool"
    std::string content;
};

enum class chat_family { chatml, llama2, llama3, mistral, gemma, phi3, zephyr, custom };

// Prefix and suffix around one message's content; "{role}" in either is replaced by the role name.
struct chat_role_format {
    std::string prefix, suffix;
};

// A user-defined format: content is written verbatim (no trimming) between its role's prefix and
// suffix. Roles without an entry of their own use `other` (by default "{role}: " ... "\n").
struct custom_chat_format {
    chat_role_format system{"{role}: ", "\n"};
    chat_role_format user{"{role}: ", "\n"};
    chat_role_format assistant{"{role}: ", "\n"};
    chat_role_format tool{"{role}: ", "\n"};
    std::string generation_prompt = "assistant:";   // written when add_generation_prompt
    std::string bos;                                 // written first when add_bos
    std::string end_of_turn = "\n";                  // what generation should stop at
};

// A rendered prompt and the byte ranges of it that are message content (in order, disjoint).
struct chat_prompt {
    std::string text;
    std::vector<text_range> content;
};

struct chat_render_options {
    bool add_generation_prompt = true;   // end with the cue for the assistant's reply
    bool add_bos = false;                // write the template's leading BOS text (see the header comment)
};

namespace detail {

inline bool is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

inline std::string_view trim_view(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && is_ascii_space(s[b])) ++b;
    while (e > b && is_ascii_space(s[e - 1])) --e;
    return s.substr(b, e - b);
}

inline std::string trim_ascii(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && is_ascii_space(s[b])) ++b;
    while (e > b && is_ascii_space(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

inline std::string replace_all(std::string s, std::string_view from, std::string_view to) {
    if (from.empty()) return s;
    for (std::size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
        s.replace(pos, from.size(), to);
    return s;
}

// Message content inside a cat() call: recorded as a content range.
struct content {
    std::string_view text;
};

// The prompt being rendered: template text and content ranges.
struct prompt_builder {
    chat_prompt p;
    void append(std::string_view s) { p.text.append(s); }
    void append(const std::string& s) { p.text.append(s); }
    void append(const char* s) { p.text.append(s); }
    void append(content c) {
        if (c.text.empty()) return;
        if (!p.content.empty() && p.content.back().offset + p.content.back().length == p.text.size())
            p.content.back().length += c.text.size();  // adjacent content pieces form one range
        else
            p.content.push_back({p.text.size(), c.text.size()});
        p.text.append(c.text);
    }
    void append(const prompt_builder& other) {
        for (const auto& r : other.p.content) p.content.push_back({p.text.size() + r.offset, r.length});
        p.text.append(other.p.text);
    }
    // Removes ASCII whitespace at both ends, shrinking the content ranges with it.
    void trim() {
        std::size_t b = 0, e = p.text.size();
        while (b < e && is_ascii_space(p.text[b])) ++b;
        while (e > b && is_ascii_space(p.text[e - 1])) --e;
        std::vector<text_range> kept;
        for (const auto& r : p.content) {
            const std::size_t rb = std::max(r.offset, b), re = std::min(r.offset + r.length, e);
            if (re > rb) kept.push_back({rb - b, re - rb});
        }
        p.text = p.text.substr(b, e - b);
        p.content = std::move(kept);
    }
};

// Appends the parts in order: no temporaries (GCC 12 warns falsely about `"x" + std::string`).
template <class... Parts> void cat(std::string& out, const Parts&... parts) { (out.append(parts), ...); }
template <class... Parts> void cat(prompt_builder& out, const Parts&... parts) { (out.append(parts), ...); }

struct family_info {
    chat_family family;
    std::string_view name;
    std::string_view bos;           // text of `{{ bos_token }}` at the start, empty if the template writes none
    std::string_view end_of_turn;   // what closes an assistant turn
};

inline constexpr std::array<family_info, 7> k_chat_families{{
    {chat_family::chatml, "chatml", "", "<|im_end|>"},
    {chat_family::llama2, "llama2", "<s>", "</s>"},
    {chat_family::llama3, "llama3", "<|begin_of_text|>", "<|eot_id|>"},
    {chat_family::mistral, "mistral", "<s>", "</s>"},
    {chat_family::gemma, "gemma", "<bos>", "<end_of_turn>"},
    {chat_family::phi3, "phi3", "", "<|end|>"},
    {chat_family::zephyr, "zephyr", "", "</s>"},
}};

inline const family_info& info_of(chat_family f) {
    for (const auto& i : k_chat_families)
        if (i.family == f) return i;
    throw error("chat template: no built-in family for this value");
}

inline void check_role(const chat_message& m, std::size_t index) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool")
        throw error("chat message " + std::to_string(index) + ": unknown role '" + m.role +
                    "' (expected system, user, assistant or tool)");
}

// Llama-2, Mistral and Gemma know only user/assistant turns after one optional leading system
// message, and their templates raise an exception unless the turns alternate starting with user.
// A tool result is given to them as a user turn.
struct alternating_turns {
    std::optional<std::string> system;
    std::vector<chat_message> turns;   // roles are "user" or "assistant" only
};

inline alternating_turns split_alternating(std::span<const chat_message> messages, std::string_view family) {
    alternating_turns r;
    std::size_t first = 0;
    if (!messages.empty() && messages[0].role == "system") {
        r.system = messages[0].content;
        first = 1;
    }
    for (std::size_t i = first; i < messages.size(); ++i) {
        const auto& m = messages[i];
        if (m.role == "system")
            throw error("chat template " + std::string(family) + ": message " + std::to_string(i) +
                        " is a system message; only the first message may be one");
        const std::string role = m.role == "tool" ? "user" : m.role;
        const bool expect_user = r.turns.size() % 2 == 0;
        if ((role == "user") != expect_user)
            throw error("chat template " + std::string(family) + ": message " + std::to_string(i) + " ('" + m.role +
                        "') breaks the user/assistant alternation after the optional system message");
        r.turns.push_back({role, m.content});
    }
    return r;
}

}  // namespace detail

class chat_template {
public:
    // A built-in family by name: chatml, llama2, llama3, mistral, gemma, phi3, zephyr.
    static chat_template from_name(std::string_view name) {
        for (const auto& i : detail::k_chat_families)
            if (i.name == name) return chat_template(i.family);
        throw lookup_error("unknown chat template name '" + std::string(name) + "' (known: " + known_names() + ")");
    }

    // The family of a Jinja chat template (GGUF `tokenizer.chat_template`), from substrings only
    // that family's templates contain; nullopt when none match.
    static std::optional<chat_family> detect(std::string_view jinja) {
        auto has = [&](std::string_view s) { return jinja.find(s) != std::string_view::npos; };
        if (has("<|im_start|>") && !has("<|im_sep|>")) return chat_family::chatml;   // <|im_sep|> is Phi-4's
        if (has("<|start_header_id|>") && has("<|end_header_id|>")) return chat_family::llama3;
        if (has("<start_of_turn>")) return chat_family::gemma;
        if (has("[INST]")) return has("<<SYS>>") ? chat_family::llama2 : chat_family::mistral;
        if (has("<|assistant|>") && has("<|end|>")) return chat_family::phi3;
        if (has("<|user|>") && has("<|assistant|>")) return chat_family::zephyr;
        return std::nullopt;
    }

    // A name if `name_or_jinja` is one, else the detected family of a Jinja template.
    static chat_template from_string(std::string_view name_or_jinja) {
        for (const auto& i : detail::k_chat_families)
            if (i.name == name_or_jinja) return chat_template(i.family);
        if (auto f = detect(name_or_jinja)) return chat_template(*f);
        std::string head(name_or_jinja.substr(0, 60));
        throw lookup_error("chat template not recognised (not a known name, and no known family's markers in '" + head +
                           (name_or_jinja.size() > 60 ? "...'" : "'") + "); known: " + known_names() +
                           ", or give a custom format");
    }

    static chat_template custom(custom_chat_format format) {
        chat_template t(chat_family::custom);
        t.custom_ = std::move(format);
        return t;
    }

    explicit chat_template(chat_family family) : family_(family) {
        if (family == chat_family::custom) custom_ = custom_chat_format{};
    }

    chat_family family() const noexcept { return family_; }
    std::string name() const { return family_ == chat_family::custom ? "custom" : std::string(detail::info_of(family_).name); }

    // The template's leading BOS text (empty if it writes none).
    std::string bos_text() const { return family_ == chat_family::custom ? custom_.bos : std::string(detail::info_of(family_).bos); }

    // The text that ends an assistant turn: a stop string for generating a reply.
    std::string end_of_turn() const {
        return family_ == chat_family::custom ? custom_.end_of_turn : std::string(detail::info_of(family_).end_of_turn);
    }

    static std::string known_names() {
        std::string s;
        for (const auto& i : detail::k_chat_families) s += (s.empty() ? "" : ", ") + std::string(i.name);
        return s;
    }

    std::string apply(std::span<const chat_message> messages, const chat_render_options& options = {}) const {
        return render(messages, options).text;
    }

    // The prompt with the ranges that are message content (see the header comment).
    chat_prompt render(std::span<const chat_message> messages, const chat_render_options& options = {}) const {
        for (std::size_t i = 0; i < messages.size(); ++i) detail::check_role(messages[i], i);
        detail::prompt_builder out;
        if (options.add_bos) out.append(bos_text());
        switch (family_) {
            case chat_family::chatml: render_chatml(messages, options, out); break;
            case chat_family::llama2: render_llama2(messages, out); break;
            case chat_family::llama3: render_llama3(messages, options, out); break;
            case chat_family::mistral: render_mistral(messages, out); break;
            case chat_family::gemma: render_gemma(messages, options, out); break;
            case chat_family::phi3: render_phi3(messages, options, out); break;
            case chat_family::zephyr: render_zephyr(messages, options, out); break;
            case chat_family::custom: render_custom(messages, options, out); break;
        }
        return std::move(out.p);
    }

    std::string apply(std::initializer_list<chat_message> messages, const chat_render_options& options = {}) const {
        return apply(std::span<const chat_message>(messages.begin(), messages.size()), options);
    }
    chat_prompt render(std::initializer_list<chat_message> messages, const chat_render_options& options = {}) const {
        return render(std::span<const chat_message>(messages.begin(), messages.size()), options);
    }

private:
    // Qwen2.5 and SmolLM2 templates insert their own default system message when there is none;
    // generic ChatML (and this renderer) do not, so pass a system message to reproduce them.
    static void render_chatml(std::span<const chat_message> ms, const chat_render_options& o, detail::prompt_builder& out) {
        for (const auto& m : ms) detail::cat(out, "<|im_start|>", m.role, "\n", detail::content{m.content}, "<|im_end|>\n");
        if (o.add_generation_prompt) out.append("<|im_start|>assistant\n");
    }

    // Meta's Llama-2-chat template: the system block is glued to the first user message, and each
    // message is stripped as a whole (so only the outer whitespace of "<<SYS>>...user" goes). Every
    // user turn opens with BOS; the prompt already ends with the cue " [/INST]".
    static void render_llama2(std::span<const chat_message> ms, detail::prompt_builder& out) {
        const auto t = detail::split_alternating(ms, "llama2");
        for (std::size_t i = 0; i < t.turns.size(); ++i) {
            detail::prompt_builder content;
            if (i == 0 && t.system) detail::cat(content, "<<SYS>>\n", detail::content{*t.system}, "\n<</SYS>>\n\n");
            content.append(detail::content{t.turns[i].content});
            content.trim();
            if (t.turns[i].role == "user") {
                if (i > 0) out.append("<s>");
                detail::cat(out, "[INST] ", content, " [/INST]");
            } else {
                detail::cat(out, " ", content, " </s>");
            }
        }
    }

    static void render_llama3(std::span<const chat_message> ms, const chat_render_options& o, detail::prompt_builder& out) {
        for (const auto& m : ms)
            detail::cat(out, "<|start_header_id|>", m.role, "<|end_header_id|>\n\n", detail::content{detail::trim_view(m.content)}, "<|eot_id|>");
        if (o.add_generation_prompt) out.append("<|start_header_id|>assistant<|end_header_id|>\n\n");
    }

    // Mistral's "v1" template (Mistral-7B-Instruct-v0.1/v0.2, Mixtral-8x7B-Instruct): a space before
    // every [INST], the system message prepended to the first user message, nothing trimmed.
    static void render_mistral(std::span<const chat_message> ms, detail::prompt_builder& out) {
        const auto t = detail::split_alternating(ms, "mistral");
        for (std::size_t i = 0; i < t.turns.size(); ++i) {
            const auto& m = t.turns[i];
            if (m.role == "user") {
                out.append(" [INST] ");
                if (i == 0 && t.system) detail::cat(out, detail::content{*t.system}, "\n\n");
                detail::cat(out, detail::content{m.content}, " [/INST]");
            } else {
                detail::cat(out, " ", detail::content{m.content}, "</s>");
            }
        }
    }

    // Gemma 3: the system message (untrimmed) plus "\n\n" opens the first user turn.
    static void render_gemma(std::span<const chat_message> ms, const chat_render_options& o, detail::prompt_builder& out) {
        const auto t = detail::split_alternating(ms, "gemma");
        for (std::size_t i = 0; i < t.turns.size(); ++i) {
            const auto& m = t.turns[i];
            detail::cat(out, "<start_of_turn>", m.role == "assistant" ? "model" : "user", "\n");
            if (i == 0 && t.system) detail::cat(out, detail::content{*t.system}, "\n\n");
            detail::cat(out, detail::content{detail::trim_view(m.content)}, "<end_of_turn>\n");
        }
        if (o.add_generation_prompt) out.append("<start_of_turn>model\n");
    }

    // Phi-3.5-mini's template: an empty system message is skipped, and without a generation prompt
    // the conversation is closed with the EOS text. Its template drops other roles; a tool message
    // is written as <|tool|> (as llama.cpp does) rather than silently lost.
    static void render_phi3(std::span<const chat_message> ms, const chat_render_options& o, detail::prompt_builder& out) {
        for (const auto& m : ms) {
            if (m.role == "system" && m.content.empty()) continue;
            detail::cat(out, "<|", m.role, "|>\n", detail::content{m.content}, "<|end|>\n");
        }
        out.append(o.add_generation_prompt ? "<|assistant|>\n" : "<|endoftext|>");
    }

    // zephyr-7b-beta: every message ends with EOS and a newline; the generation prompt is written
    // inside the template's message loop, so an empty conversation gets none.
    static void render_zephyr(std::span<const chat_message> ms, const chat_render_options& o, detail::prompt_builder& out) {
        for (const auto& m : ms) detail::cat(out, "<|", m.role, "|>\n", detail::content{m.content}, "</s>\n");
        if (o.add_generation_prompt && !ms.empty()) out.append("<|assistant|>\n");
    }

    void render_custom(std::span<const chat_message> ms, const chat_render_options& o, detail::prompt_builder& out) const {
        for (const auto& m : ms) {
            const chat_role_format& f = m.role == "system" ? custom_.system
                                        : m.role == "user" ? custom_.user
                                        : m.role == "assistant" ? custom_.assistant
                                                                : custom_.tool;
            detail::cat(out, detail::replace_all(f.prefix, "{role}", m.role), detail::content{m.content},
                        detail::replace_all(f.suffix, "{role}", m.role));
        }
        if (o.add_generation_prompt) out.append(custom_.generation_prompt);
    }

    chat_family family_;
    custom_chat_format custom_;
};

// Messages from JSON text `[{"role": "...", "content": "..."}, ...]`.
inline std::vector<chat_message> chat_messages_from_json(std::string_view json_text, const std::string& source = "messages") {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::exception& e) {
        // Not only parse_error: a number beyond double's range (1e400) is an out_of_range.
        throw error(source + ": not valid JSON: " + e.what());
    }
    if (!j.is_array()) throw error(source + ": expected a JSON array of {\"role\", \"content\"} objects");
    std::vector<chat_message> out;
    for (std::size_t i = 0; i < j.size(); ++i) {
        const auto& m = j[i];
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
            !m["content"].is_string())
            throw error(source + ": element " + std::to_string(i) + " needs string fields \"role\" and \"content\"");
        out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
        detail::check_role(out.back(), i);
    }
    return out;
}

}  // namespace minigpt
