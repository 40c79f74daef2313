// The smallest downstream program: the README's "library in ten lines", built with nothing but
// minigpt::minigpt. With a model path it generates; without, it only checks the version macro
// against the version find_package reported.
#include <minigpt/model.hpp>
#include <minigpt/version.hpp>

#include <cstdio>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
    if (std::strlen(CONSUMER_PACKAGE_VERSION) > 0 && std::strcmp(CONSUMER_PACKAGE_VERSION, MINIGPT_VERSION_STRING) != 0) {
        std::printf("consumer: package version %s, header %s\n", CONSUMER_PACKAGE_VERSION, MINIGPT_VERSION_STRING);
        return 1;
    }
    if (argc < 2) {
        std::printf("consumer: minigpt %s\n", MINIGPT_VERSION_STRING);
        return 0;
    }
    auto lm = minigpt::llm::load(argv[1]);
    minigpt::context ctx(lm.weights);
    minigpt::generation_params p;
    p.max_tokens = 8;
    auto out = minigpt::generate(lm, ctx, "Once upon a time", p,
        [](std::int32_t, std::string_view text) { std::fputs(std::string(text).c_str(), stdout); return true; });
    std::printf("\nconsumer: %lld tokens\n", static_cast<long long>(out.stats.n_generated));
    return out.stats.n_generated == 8 ? 0 : 1;
}
