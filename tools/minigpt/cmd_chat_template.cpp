// `minigpt chat-template`: prints the prompt a chat template renders for a JSON list of messages.
//
// The template comes from a model's GGUF metadata (tokenizer.chat_template, detected by family
// like llama.cpp does) or from --template, which takes a family name or a Jinja template string.
// The prompt is written to stdout exactly, with no trailing newline added, so it can be piped.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "command.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/text/chat_template.hpp"
#include "minigpt/text/tokenizer.hpp"
#include "minigpt/text/vocab_gguf.hpp"
#include "prompt_print.hpp"

namespace {

int run_chat_template(const std::vector<std::string>& args) {
    using namespace minigpt;
    tool::flags f("usage: minigpt chat-template (-m MODEL.gguf | --template NAME) --messages FILE.json [--no-add-generation-prompt]\n"
                  "Renders the messages ([{\"role\": ..., \"content\": ...}]) with the model's chat template.\n"
                  "Template names: " + chat_template::known_names());
    f.value({"-m", "--model"}, "GGUF model whose tokenizer.chat_template is used")
        .value({"--template"}, "template family name, or a Jinja chat template to detect the family from")
        .value({"--messages"}, "JSON file with the conversation")
        .boolean({"--no-add-generation-prompt"}, "do not end with the assistant's generation prompt")
        .boolean({"--add-bos"}, "write the template's BOS text (normally the tokenizer adds the BOS token)")
        .boolean({"--verbose-prompt"}, "with -m: print the prompt's token ids and pieces on stderr (control tokens parsed in the\n"
                                       "template's text only, never in message content)");
    f.parse(args);
    if (f.help()) {
        std::fputs(f.usage().c_str(), stdout);
        return 0;
    }
    if (f.has("-m") == f.has("--template")) throw tool::usage_error("give exactly one of -m and --template");
    const std::string path = f.require("--messages");

    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error("cannot open messages file " + path);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto messages = chat_messages_from_json(text, path);

    std::string source;
    if (f.has("-m")) {
        const auto model = io::gguf_file::open(f.str("-m"));
        const auto jinja = model.find<std::string>("tokenizer.chat_template");
        if (!jinja) throw lookup_error(f.str("-m") + ": no tokenizer.chat_template key; pass --template NAME");
        source = *jinja;
    } else {
        source = f.str("--template");
    }
    const auto tmpl = chat_template::from_string(source);
    chat_render_options options;
    options.add_generation_prompt = !f.on("--no-add-generation-prompt");
    options.add_bos = f.on("--add-bos");
    const chat_prompt prompt = tmpl.render(messages, options);
    if (f.on("--verbose-prompt")) {
        if (!f.has("-m")) throw tool::usage_error("--verbose-prompt needs -m MODEL.gguf (its vocabulary)");
        const tokenizer tok = tokenizer::from_gguf(io::gguf_file::open(f.str("-m")));
        const auto ids = tok.encode_with_literals(prompt.text, tok.add_bos_default(), true, prompt.content);
        tool::print_prompt_tokens(tok, prompt.text, ids);
    }
    std::fwrite(prompt.text.data(), 1, prompt.text.size(), stdout);
    return 0;
}

const minigpt::tool::register_command reg_chat_template{"chat-template", "render a conversation with a chat template", run_chat_template};

}  // namespace
