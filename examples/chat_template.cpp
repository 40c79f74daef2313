// Chat templates: renders one conversation in every built-in family, detects a family from a Jinja
// template string (as found in a GGUF file's tokenizer.chat_template), and uses a custom format.
//
// Newlines are shown as they are; each prompt is printed between "<<<" and ">>>" so leading and
// trailing whitespace is visible.
#include <cstdio>
#include <string>
#include <vector>

#include "minigpt/text/chat_template.hpp"

int main() {
    using namespace minigpt;
    const std::vector<chat_message> conversation = {
        {"system", "You are a helpful assistant."},
        {"user", "What is 2+2?"},
        {"assistant", "2+2 is 4."},
        {"user", "And 3+3?"},
    };
    for (const char* name : {"chatml", "llama2", "llama3", "mistral", "gemma", "phi3", "zephyr"}) {
        const auto t = chat_template::from_name(name);
        std::printf("== %s (end of turn: %s, BOS text left to the tokenizer: '%s')\n<<<%s>>>\n\n", name, t.end_of_turn().c_str(),
                    t.bos_text().c_str(), t.apply(conversation).c_str());
    }

    // A GGUF model carries its Jinja template; the family is recognised by its markers.
    const std::string jinja =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    std::printf("== detected from a Jinja template: %s\n\n", chat_template::from_string(jinja).name().c_str());

    // Anything else: per-role prefix and suffix, "{role}" filled in.
    custom_chat_format alpaca;
    alpaca.system = {"", "\n\n"};
    alpaca.user = {"### Instruction:\n", "\n\n"};
    alpaca.assistant = {"### Response:\n", "\n\n"};
    alpaca.generation_prompt = "### Response:\n";
    alpaca.end_of_turn = "\n\n###";
    std::printf("== custom (Alpaca-style)\n<<<%s>>>\n", chat_template::custom(alpaca).apply(conversation).c_str());
    return 0;
}
