// Chat templates against literal expected prompts: for every family, the exact string for a
// conversation with a system message (system, user, assistant, user + generation prompt), written
// out by hand from each model's Jinja chat_template, and llama.cpp's expected outputs for its
// six-message test conversation (tests/test-chat-template.cpp) where llama.cpp has one that
// matches the same template. Also family detection, custom formats, JSON input and the CLI.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "minigpt/text/chat_template.hpp"
#include "test_data.hpp"

using namespace minigpt;

namespace {

const std::vector<chat_message> k_conversation = {
    {"system", "You are a helpful assistant."},
    {"user", "What is 2+2?"},
    {"assistant", "2+2 is 4."},
    {"user", "And 3+3?"},
};

// llama.cpp's test conversation (note the padded assistant message: it shows who trims).
const std::vector<chat_message> k_llama_cpp_conversation = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};

std::string render(const char* name, const std::vector<chat_message>& ms, chat_render_options o = {}) {
    return chat_template::from_name(name).apply(ms, o);
}

}  // namespace

TEST(ChatTemplate, ChatML) {
    EXPECT_EQ(render("chatml", k_conversation),
              "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
              "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
              "<|im_start|>assistant\n2+2 is 4.<|im_end|>\n"
              "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
              "<|im_start|>assistant\n");
    // llama.cpp: teknium/OpenHermes-2.5-Mistral-7B
    EXPECT_EQ(render("chatml", k_llama_cpp_conversation),
              "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
              "Hi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   "
              "<|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n");
    // ChatML writes no BOS, so add_bos changes nothing.
    EXPECT_EQ(render("chatml", k_conversation, {true, true}), render("chatml", k_conversation));
}

TEST(ChatTemplate, Llama2) {
    EXPECT_EQ(render("llama2", k_conversation),
              "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nWhat is 2+2? [/INST] 2+2 is 4. </s><s>[INST] And 3+3? [/INST]");
    EXPECT_EQ(render("llama2", k_conversation, {true, true}),
              "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nWhat is 2+2? [/INST] 2+2 is 4. </s><s>[INST] And 3+3? [/INST]");
    // The prompt already ends with the cue; there is no separate generation prompt.
    EXPECT_EQ(render("llama2", k_conversation, {false, false}), render("llama2", k_conversation));
    // llama.cpp's expected Jinja output for vigogne-2-70b-chat (the Llama-2 template with bos_token
    // = "", so its in-history "<s>" is empty too) is ours with the "<s>" in the history removed.
    std::string ours = render("llama2", k_llama_cpp_conversation);
    EXPECT_EQ(ours,
              "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Who are you [/INST] "
              "I am an assistant </s><s>[INST] Another question [/INST]");
    for (std::size_t p; (p = ours.find("<s>")) != std::string::npos;) ours.erase(p, 3);
    EXPECT_EQ(ours,
              "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>[INST] Who are you [/INST] "
              "I am an assistant </s>[INST] Another question [/INST]");
}

TEST(ChatTemplate, Llama2StripsTheWholeFirstMessageOnly) {
    // strip() applies to "<<SYS>>...user": the user's leading spaces stay inside, its trailing go.
    const std::vector<chat_message> ms = {{"system", " sys "}, {"user", "  hi  "}};
    EXPECT_EQ(render("llama2", ms), "[INST] <<SYS>>\n sys \n<</SYS>>\n\n  hi [/INST]");
}

TEST(ChatTemplate, Llama3) {
    EXPECT_EQ(render("llama3", k_conversation),
              "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n2+2 is 4.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
    EXPECT_EQ(render("llama3", k_conversation, {false, true}),
              "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n2+2 is 4.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>");
    // llama.cpp: Llama-3
    EXPECT_EQ(render("llama3", k_llama_cpp_conversation),
              "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user"
              "<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
              "\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Mistral) {
    EXPECT_EQ(render("mistral", k_conversation),
              " [INST] You are a helpful assistant.\n\nWhat is 2+2? [/INST] 2+2 is 4.</s> [INST] And 3+3? [/INST]");
    EXPECT_EQ(render("mistral", k_conversation, {true, true}),
              "<s> [INST] You are a helpful assistant.\n\nWhat is 2+2? [/INST] 2+2 is 4.</s> [INST] And 3+3? [/INST]");
    // llama.cpp: Mistral-7B-Instruct-v0.2 (mistralai 'v1' template with a system prompt)
    EXPECT_EQ(render("mistral", k_llama_cpp_conversation),
              " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    I am an assistant   "
              "</s> [INST] Another question [/INST]");
}

TEST(ChatTemplate, Gemma) {
    EXPECT_EQ(render("gemma", k_conversation),
              "<start_of_turn>user\nYou are a helpful assistant.\n\nWhat is 2+2?<end_of_turn>\n"
              "<start_of_turn>model\n2+2 is 4.<end_of_turn>\n"
              "<start_of_turn>user\nAnd 3+3?<end_of_turn>\n"
              "<start_of_turn>model\n");
    EXPECT_EQ(render("gemma", k_conversation, {false, true}),
              "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nWhat is 2+2?<end_of_turn>\n"
              "<start_of_turn>model\n2+2 is 4.<end_of_turn>\n"
              "<start_of_turn>user\nAnd 3+3?<end_of_turn>\n");
    // llama.cpp: google/gemma-7b-it (its built-in renderer folds the system message the same way)
    EXPECT_EQ(render("gemma", k_llama_cpp_conversation),
              "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
              "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n"
              "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n");
}

TEST(ChatTemplate, Phi3) {
    EXPECT_EQ(render("phi3", k_conversation),
              "<|system|>\nYou are a helpful assistant.<|end|>\n"
              "<|user|>\nWhat is 2+2?<|end|>\n"
              "<|assistant|>\n2+2 is 4.<|end|>\n"
              "<|user|>\nAnd 3+3?<|end|>\n"
              "<|assistant|>\n");
    // Without a generation prompt the template closes with the EOS text.
    EXPECT_EQ(render("phi3", {{"user", "Hi"}}, {false, false}), "<|user|>\nHi<|end|>\n<|endoftext|>");
    // An empty system message is skipped.
    EXPECT_EQ(render("phi3", {{"system", ""}, {"user", "Hi"}}), "<|user|>\nHi<|end|>\n<|assistant|>\n");
    // llama.cpp: Phi-3-small / Phi-3-vision
    EXPECT_EQ(render("phi3", k_llama_cpp_conversation),
              "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\n"
              "Who are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n"
              "<|assistant|>\n");
}

TEST(ChatTemplate, Zephyr) {
    EXPECT_EQ(render("zephyr", k_conversation),
              "<|system|>\nYou are a helpful assistant.</s>\n"
              "<|user|>\nWhat is 2+2?</s>\n"
              "<|assistant|>\n2+2 is 4.</s>\n"
              "<|user|>\nAnd 3+3?</s>\n"
              "<|assistant|>\n");
    EXPECT_EQ(render("zephyr", {{"user", "Hi"}}, {false, false}), "<|user|>\nHi</s>\n");
    EXPECT_EQ(render("zephyr", {}), "");   // the generation prompt sits inside the template's message loop
}

TEST(ChatTemplate, ToolMessages) {
    const std::vector<chat_message> ms = {{"user", "Weather?"}, {"assistant", "[CALL]"}, {"tool", "sunny"}};
    EXPECT_EQ(render("chatml", ms, {false, false}),
              "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n[CALL]<|im_end|>\n<|im_start|>tool\nsunny<|im_end|>\n");
    // Families with only user/assistant turns get the tool result as a user turn.
    EXPECT_EQ(render("gemma", ms),
              "<start_of_turn>user\nWeather?<end_of_turn>\n<start_of_turn>model\n[CALL]<end_of_turn>\n"
              "<start_of_turn>user\nsunny<end_of_turn>\n<start_of_turn>model\n");
    EXPECT_EQ(render("mistral", ms), " [INST] Weather? [/INST] [CALL]</s> [INST] sunny [/INST]");
}

TEST(ChatTemplate, BadConversationsThrow) {
    EXPECT_THROW(render("gemma", {{"user", "a"}, {"user", "b"}}), error);
    EXPECT_THROW(render("llama2", {{"assistant", "a"}}), error);
    EXPECT_THROW(render("mistral", {{"user", "a"}, {"system", "late"}}), error);
    EXPECT_THROW(render("chatml", {{"robot", "a"}}), error);
    try {
        render("gemma", {{"user", "a"}, {"user", "b"}});
        FAIL();
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("message 1"), std::string::npos) << e.what();
    }
    EXPECT_THROW(chat_template::from_name("vicuna"), lookup_error);
}

TEST(ChatTemplate, DetectsFamiliesFromJinja) {
    struct case_t {
        const char* jinja;
        chat_family family;
    };
    const case_t cases[] = {
        {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
         "{% endfor %}",
         chat_family::chatml},
        {"{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% endif %}"
         "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}",
         chat_family::llama2},
        {"{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
         "'<|eot_id|>' %}",
         chat_family::llama3},
        {"{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}", chat_family::mistral},
        {"{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}", chat_family::gemma},
        {"{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
         chat_family::phi3},
        {"{{ '<|user|>\\n' + message['content'] + eos_token }}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}",
         chat_family::zephyr},
    };
    for (const auto& c : cases) {
        auto f = chat_template::detect(c.jinja);
        ASSERT_TRUE(f.has_value()) << c.jinja;
        EXPECT_EQ(*f, c.family) << c.jinja;
        EXPECT_EQ(chat_template::from_string(c.jinja).family(), c.family);
    }
    EXPECT_FALSE(chat_template::detect("{{ messages }}").has_value());
    // Phi-4 uses <|im_start|> with <|im_sep|>: not ChatML.
    EXPECT_FALSE(chat_template::detect("<|im_start|>user<|im_sep|>").has_value());
    EXPECT_EQ(chat_template::from_string("gemma").family(), chat_family::gemma);
    EXPECT_THROW(chat_template::from_string("{{ messages }}"), lookup_error);
}

TEST(ChatTemplate, EndOfTurnAndBos) {
    EXPECT_EQ(chat_template::from_name("chatml").end_of_turn(), "<|im_end|>");
    EXPECT_EQ(chat_template::from_name("llama3").end_of_turn(), "<|eot_id|>");
    EXPECT_EQ(chat_template::from_name("gemma").end_of_turn(), "<end_of_turn>");
    EXPECT_EQ(chat_template::from_name("phi3").end_of_turn(), "<|end|>");
    EXPECT_EQ(chat_template::from_name("llama2").bos_text(), "<s>");
    EXPECT_EQ(chat_template::from_name("zephyr").bos_text(), "");
}

TEST(ChatTemplate, CustomFormat) {
    custom_chat_format f;
    f.system = {"### System\n", "\n\n"};
    f.user = {"### {role}\n", "\n\n"};
    f.assistant = {"### Response\n", "</s>\n\n"};
    f.generation_prompt = "### Response\n";
    f.bos = "<s>";
    const auto t = chat_template::custom(f);
    EXPECT_EQ(t.apply(k_conversation, {true, true}),
              "<s>### System\nYou are a helpful assistant.\n\n### user\nWhat is 2+2?\n\n### Response\n2+2 is 4.</s>\n\n"
              "### user\nAnd 3+3?\n\n### Response\n");
    // Defaults: "{role}: content\n".
    EXPECT_EQ(chat_template(chat_family::custom).apply({{"user", "hi"}, {"tool", "42"}}), "user: hi\ntool: 42\nassistant:");
}

TEST(ChatTemplate, MessagesFromJson) {
    const auto ms = chat_messages_from_json(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "line\nbreak"}])");
    ASSERT_EQ(ms.size(), 2u);
    EXPECT_EQ(ms[1].role, "user");
    EXPECT_EQ(ms[1].content, "line\nbreak");
    EXPECT_THROW(chat_messages_from_json("{\"role\": \"user\"}"), error);
    EXPECT_THROW(chat_messages_from_json("[{\"role\": \"user\"}]"), error);
    EXPECT_THROW(chat_messages_from_json("[{\"role\": \"user\", \"content\": 3}]"), error);
    EXPECT_THROW(chat_messages_from_json("[{\"role\": \"robot\", \"content\": \"x\"}]"), error);
    EXPECT_THROW(chat_messages_from_json("[{"), error);
}

TEST(ChatTemplateTool, PrintsRenderedPrompt) {
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "the minigpt tool is not built (" << MINIGPT_TOOL << ")";
    const auto dir = test::temp_dir("chat-template");
    const auto file = dir / "messages.json";
    std::ofstream(file) << R"([{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "2+2 is 4."},
        {"role": "user", "content": "And 3+3?"}])";
    std::string out;
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " chat-template --template gemma --messages " + file.string(), &out), 0);
    EXPECT_EQ(out, render("gemma", k_conversation));
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " chat-template --template chatml --no-add-generation-prompt --messages " +
                            file.string(),
                        &out),
              0);
    EXPECT_EQ(out, render("chatml", k_conversation, {false, false}));
    EXPECT_NE(test::run(std::string(MINIGPT_TOOL) + " chat-template --template nope --messages " + file.string() + " 2>/dev/null"), 0);
    EXPECT_NE(test::run(std::string(MINIGPT_TOOL) + " chat-template --template chatml 2>/dev/null"), 0);
}

namespace {

// A minimal GGUF v3 file, written byte by byte: no tensors, one string key.
void write_gguf_with_template(const std::filesystem::path& path, const std::string& jinja) {
    std::string b = "GGUF";
    auto u32 = [&](std::uint32_t v) { for (int i = 0; i < 4; ++i) b += static_cast<char>((v >> (8 * i)) & 0xFF); };
    auto u64 = [&](std::uint64_t v) { for (int i = 0; i < 8; ++i) b += static_cast<char>((v >> (8 * i)) & 0xFF); };
    auto str = [&](const std::string& s) { u64(s.size()); b += s; };
    u32(3);   // version
    u64(0);   // tensors
    u64(1);   // key/value pairs
    str("tokenizer.chat_template");
    u32(8);   // GGUF_TYPE_STRING
    str(jinja);
    while (b.size() % 32 != 0) b += '\0';
    std::ofstream(path, std::ios::binary) << b;
}

}  // namespace

TEST(ChatTemplateTool, ReadsTemplateFromGguf) {
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "the minigpt tool is not built (" << MINIGPT_TOOL << ")";
    const auto dir = test::temp_dir("chat-template-gguf");
    const auto model = dir / "model.gguf";
    write_gguf_with_template(model, "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] }}{% endfor %}");
    const auto file = dir / "messages.json";
    std::ofstream(file) << R"([{"role": "user", "content": "Hi"}])";
    std::string out;
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " chat-template -m " + model.string() + " --messages " + file.string(), &out), 0);
    EXPECT_EQ(out, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " chat-template -m " + model.string() + " --add-bos --messages " + file.string(), &out), 0);
    EXPECT_EQ(out, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
    // A GGUF without the key is an error, not a guess.
    const auto bare = dir / "bare.gguf";
    write_gguf_with_template(bare, "x");
    std::string bytes = test::read_text(bare.string());
    bytes.replace(bytes.find("chat_template"), 13, "xhat_template");   // same length, another key
    std::ofstream(bare, std::ios::binary) << bytes;
    EXPECT_NE(test::run(std::string(MINIGPT_TOOL) + " chat-template -m " + bare.string() + " --messages " + file.string() + " 2>/dev/null"), 0);
}

