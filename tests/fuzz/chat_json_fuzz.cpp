// libFuzzer harness: the JSON a user or a model supplies. Byte 0 picks the target, the rest is text:
//   even: chat messages (chat_messages_from_json), then, when they parse, rendered with every
//         built-in chat template family, and the text tried as a template name / Jinja source;
//   odd:  a generated segment ending in a tool call (generate/tool_use.hpp's parse_tool_call) in
//         JSON form ("<tool_call>" + text) and in marker form ("[SEARCH]" + text).
// A malformed tool call must come back as a record with an error text, never as an exception.
// Seeds: corpus/chat_json.
#include "fuzz_common.hpp"
#include "minigpt/generate/tool_use.hpp"
#include "minigpt/text/chat_template.hpp"

using namespace minigpt;

MINIGPT_FUZZ_TARGET(chat_json) {
    if (size < 1) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    if ((data[0] & 1) == 0) {
        std::vector<chat_message> messages;
        fuzz::guarded("chat messages", [&] { messages = chat_messages_from_json(text); });
        for (const char* family : {"chatml", "llama2", "llama3", "mistral", "gemma", "phi3", "zephyr"})
            fuzz::guarded("chat render", [&] {
                chat_render_options o;
                o.add_generation_prompt = (data[0] & 2) != 0;
                (void)chat_template::from_name(family).apply(messages, o);
            });
        fuzz::guarded("chat template detect", [&] { (void)chat_template::from_string(text); });
        return 0;
    }
    tool_use_options o;
    o.json = json_call_tags{};
    for (const auto& [segment, close] : {std::pair{"<tool_call>" + std::string(text), std::string("</tool_call>")},
                                         std::pair{"[SEARCH]" + std::string(text), std::string("[END]")}}) {
        try {
            std::string error_text;
            const tool_call_record call = detail::parse_tool_call(segment, close, o, error_text);
            fuzz::fuzz_check(!call.tool.empty() || !error_text.empty(), "a tool call without a tool name and without an error");
        } catch (const std::exception& e) {
            std::fprintf(stderr, "FUZZ FINDING (tool call): %s escaped from parse_tool_call: %s\n", typeid(e).name(), e.what());
            std::abort();
        }
    }
    return 0;
}
