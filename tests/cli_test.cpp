// The `minigpt` command line as a user meets it (issue 15): bad values rejected before anything is
// loaded or printed, repeated -r, --version, Ctrl-C in generate and chat, clear errors for files that
// are not models or not files, positional prompts, perplexity's running output and knn-build's
// progress. Every test runs the built binary (MINIGPT_TOOL).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "minigpt/knn/knn_lm.hpp"
#include "minigpt/version.hpp"
#include "test_data.hpp"

using minigpt::test::shared_path;

namespace {

#define REQUIRE_TOOL() \
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "the minigpt tool is not built (" << MINIGPT_TOOL << ")"

struct outcome {
    int exit_code = -1;      // -1 when killed by a signal
    int signal = 0;
    std::string out, err;
};

// Runs the tool with `args`, writing `input` to its stdin. With `interrupt`, sends SIGINT once the first
// byte of stdout arrives, then writes `after_interrupt` and closes stdin.
outcome run_tool(const std::vector<std::string>& args, const std::string& input = {}, bool interrupt = false,
                 const std::string& after_interrupt = {}) {
    int in_pipe[2], out_pipe[2], err_pipe[2];
    if (::pipe(in_pipe) != 0 || ::pipe(out_pipe) != 0 || ::pipe(err_pipe) != 0) throw std::runtime_error("pipe");
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(in_pipe[0], 0);
        ::dup2(out_pipe[1], 1);
        ::dup2(err_pipe[1], 2);
        for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) ::close(fd);
        std::vector<char*> argv;
        std::string tool = MINIGPT_TOOL;
        argv.push_back(tool.data());
        std::vector<std::string> copy = args;
        for (auto& a : copy) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv(tool.c_str(), argv.data());
        ::_exit(127);
    }
    ::close(in_pipe[0]);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    ::signal(SIGPIPE, SIG_IGN);
    if (!input.empty()) (void)!::write(in_pipe[1], input.data(), input.size());
    if (!interrupt) ::close(in_pipe[1]);
    outcome r;
    bool out_open = true, err_open = true, interrupted = false;
    char buf[4096];
    while (out_open || err_open) {
        pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
        if (::poll(fds, 2, 60000) <= 0) break;
        for (int i = 0; i < 2; ++i) {
            if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
            const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n <= 0) {
                (i == 0 ? out_open : err_open) = false;
                continue;
            }
            (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
            if (i == 0 && interrupt && !interrupted) {
                interrupted = true;
                ::kill(pid, SIGINT);
                if (!after_interrupt.empty()) (void)!::write(in_pipe[1], after_interrupt.data(), after_interrupt.size());
                ::close(in_pipe[1]);
            }
        }
    }
    if (interrupt && !interrupted) ::close(in_pipe[1]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
    return r;
}

std::string stories() { return shared_path("models/stories260K.gguf"); }

// A random-weight Llama large enough that a reply takes a while (32000-token vocabulary, 4 layers, q8_0).
const std::string& slow_model() {
    static const std::string path = [] {
        const auto dir = minigpt::test::temp_dir("cli-slow-model");
        const std::string p = (dir / "small-q8.gguf").string();
        const auto r = run_tool({"synth", "--arch", "llama", "--preset", "small", "--type", "q8_0", "-o", p});
        if (r.exit_code != 0) throw std::runtime_error("synth failed: " + r.err);
        return p;
    }();
    return path;
}

}  // namespace

TEST(Cli, VersionMatchesTheHeader) {
    REQUIRE_TOOL();
    for (const auto& args : {std::vector<std::string>{"--version"}, std::vector<std::string>{"generate", "--version"}}) {
        const auto r = run_tool(args);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(r.out.rfind(std::string("minigpt ") + MINIGPT_VERSION_STRING + "\n", 0), 0u) << r.out;
        EXPECT_NE(r.out.find("built with"), std::string::npos) << r.out;
    }
}

// Out-of-range values are refused before the model is loaded (the model path does not even exist) and
// before the prompt is echoed.
TEST(Cli, OutOfRangeValuesAreRejectedBeforeAnythingElse) {
    REQUIRE_TOOL();
    const std::vector<std::vector<std::string>> cases = {
        {"-n", "-5"}, {"-c", "-5"}, {"-t", "-3"}, {"--top-p", "5"}, {"-b", "0"}, {"--temp", "-1"}, {"--min-p", "2"},
        {"--top-k", "-1"}, {"--temp", "nan"}};
    for (const auto& c : cases) {
        SCOPED_TRACE(c[0] + " " + c[1]);
        const auto r = run_tool({"generate", "-m", "/nonexistent/model.gguf", "-p", "ECHO_ME", c[0], c[1]});
        EXPECT_EQ(r.exit_code, 2) << r.err;
        EXPECT_NE(r.err.find(c[0]), std::string::npos) << r.err;
        EXPECT_TRUE(r.err.find("out of range") != std::string::npos || r.err.find("not a finite number") != std::string::npos) << r.err;
        EXPECT_EQ(r.out, "");
    }
    const std::vector<std::vector<std::string>> others = {
        {"chat", "-m", "/nonexistent/model.gguf", "-t", "-3"},
        {"perplexity", "-m", "/nonexistent/model.gguf", "-f", "/nonexistent/text.txt", "-t", "-3"},
        {"knn-build", "-m", "/nonexistent/model.gguf", "-f", "/nonexistent/text.txt", "-o", "/tmp/x", "-t", "-3"}};
    for (const auto& args : others) {
        SCOPED_TRACE(args[0]);
        const auto r = run_tool(args);
        EXPECT_EQ(r.exit_code, 2) << r.err;
        EXPECT_NE(r.err.find("--threads: -3 is out of range"), std::string::npos) << r.err;
    }
    const auto r = run_tool({"perplexity", "-m", "/nonexistent/model.gguf", "-f", "/nonexistent/text.txt", "-c", "0"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("-c"), std::string::npos) << r.err;
}

// An error found after loading (the prompt does not fit the context) is also the only thing printed.
TEST(Cli, NoPromptEchoBeforeAnError) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto r = run_tool({"generate", "-m", stories(), "-c", "8", "-p", "Once upon a time there was a little girl named Lily"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("does not fit the context"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
}

TEST(Cli, TooManyThreadsAreCappedWithAWarning) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto r = run_tool({"generate", "-m", stories(), "-p", "Once", "-n", "2", "-t", "1000"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("warning: -t 1000 is more than the"), std::string::npos) << r.err;
}

// Every -r is a stop string: the earliest one in the text ends generation even when it is not the last given.
TEST(Cli, RepeatedStopStringsAllApply) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const std::vector<std::string> base = {"generate", "-m", stories(), "-p", "Once upon a time", "-n", "48", "--temp", "0"};
    const auto free_run = run_tool(base);
    ASSERT_EQ(free_run.exit_code, 0) << free_run.err;
    const std::string prompt = "Once upon a time";
    ASSERT_EQ(free_run.out.rfind(prompt, 0), 0u);
    const std::string text = free_run.out.substr(prompt.size());
    ASSERT_GT(text.size(), 60u) << text;
    const std::string early = text.substr(20, 6), late = text.substr(50, 6);
    ASSERT_EQ(text.find(late), 50u) << "pick another late stop string";  // late really comes after early
    auto args = base;
    for (const auto& s : {early, late}) args.insert(args.end(), {"-r", s});
    const auto stopped = run_tool(args);
    ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
    EXPECT_EQ(stopped.out, prompt + text.substr(0, text.find(early)) + "\n");
    EXPECT_NE(stopped.err.find("stopped by: stop string '" + early + "'"), std::string::npos) << stopped.err;
    // The other order stops at the same place.
    args = base;
    for (const auto& s : {late, early}) args.insert(args.end(), {"-r", s});
    EXPECT_EQ(run_tool(args).out, stopped.out);
}

TEST(Cli, PositionalPromptIsThePrompt) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto with_p = run_tool({"generate", "-m", stories(), "-p", "Once upon", "-n", "8", "--temp", "0", "--no-stats"});
    const auto positional = run_tool({"generate", "-m", stories(), "-n", "8", "--temp", "0", "--no-stats", "Once", "upon"});
    ASSERT_EQ(with_p.exit_code, 0) << with_p.err;
    EXPECT_EQ(positional.exit_code, 0) << positional.err;
    EXPECT_EQ(positional.out, with_p.out);
    const auto both = run_tool({"generate", "-m", stories(), "-p", "Once", "upon"});
    EXPECT_EQ(both.exit_code, 2);
    EXPECT_NE(both.err.find("give one prompt"), std::string::npos) << both.err;
    // Commands without positional arguments say so instead of ignoring them.
    const auto chat = run_tool({"chat", "-m", stories(), "hello"});
    EXPECT_EQ(chat.exit_code, 2);
    EXPECT_NE(chat.err.find("unexpected argument 'hello'"), std::string::npos) << chat.err;
}

TEST(Cli, FilesThatAreNotModelsOrNotFiles) {
    REQUIRE_TOOL();
    const auto dir = minigpt::test::temp_dir("cli-files");
    const std::string text_gguf = (dir / "notes.gguf").string();
    std::ofstream(text_gguf) << "These are my notes, not a model. They are long enough for any header.\n";
    const auto r = run_tool({"generate", "-m", text_gguf, "-p", "hi"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("not a GGUF or llama2.c file"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("starts like a text file"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
    // Shorter than a llama2.c header: still named as neither format, with the file's name.
    const std::string short_text = (dir / "short.bin").string();
    std::ofstream(short_text) << "hello\n";
    const auto s = run_tool({"generate", "-m", short_text, "-p", "hi"});
    EXPECT_EQ(s.exit_code, 1);
    EXPECT_NE(s.err.find("not a GGUF or llama2.c file"), std::string::npos) << s.err;
    EXPECT_NE(s.err.find(short_text), std::string::npos) << s.err;
    EXPECT_EQ(s.err.find("truncated"), std::string::npos) << s.err;

    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    for (const auto& cmd : {"generate", "perplexity"}) {
        SCOPED_TRACE(cmd);
        const auto d = run_tool({cmd, "-m", stories(), "-f", dir.string()});
        EXPECT_EQ(d.exit_code, 1);
        EXPECT_NE(d.err.find("is a directory, not a file"), std::string::npos) << d.err;
        EXPECT_EQ(d.err.find("underflow"), std::string::npos) << d.err;
    }
    std::filesystem::remove_all(dir);
}

TEST(Cli, CtrlCInGenerateStopsAndPrintsTimings) {
    REQUIRE_TOOL();
    // --ignore-eos with a context shift never ends by itself: only the interrupt can stop it.
    const auto r = run_tool({"generate", "-m", slow_model(), "-p", "hello", "-n", "-1", "--ignore-eos", "--context-shift", "-c", "64"},
                            {}, true);
    EXPECT_EQ(r.signal, 0);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("generation:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("stopped by: interrupted (Ctrl-C)"), std::string::npos) << r.err;
}

TEST(Cli, CtrlCInChatStopsTheReplyNotTheProgram) {
    REQUIRE_TOOL();
    const auto r = run_tool({"chat", "-m", slow_model(), "-n", "-1", "-c", "256", "--temp", "0"}, "first message\n", true,
                            "second message\n");
    EXPECT_EQ(r.signal, 0);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("reply interrupted"), std::string::npos) << r.err;
    // The second message got a reply after the interrupted one: two replies, each ended by a newline.
    EXPECT_GE(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
}

// A conversation longer than the context drops its oldest exchange (the system message stays); a
// message too long by itself is refused and the chat goes on.
TEST(Cli, ChatDropsTheOldestTurnsWhenTheContextIsOutgrown) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const std::string first = "Lily liked the park.";
    const std::string huge(400, 'a');
    const auto r = run_tool({"chat", "-m", stories(), "-c", "96", "-n", "8", "--temp", "0", "-sys", "Be kind."},
                            first + "\n" + first + "\n" + huge + "\nThe end.\n");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("dropped its 2 oldest messages"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("more than the context of 96 (-c); not sent"), std::string::npos) << r.err;
    // Three replies: the first two messages and the last one.
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
}

// llama-perplexity's output: "[n]ppl," after each window, the time per window with an ETA, and
// "Final estimate: PPL = x +/- e".
TEST(Cli, PerplexityPrintsRunningValuesAndTheFinalEstimate) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto dir = minigpt::test::temp_dir("cli-ppl");
    const std::string text = (dir / "story.txt").string();
    {
        std::ofstream os(text);
        for (int i = 0; i < 12; ++i) os << "Once upon a time, there was a little girl named Lily. She liked to play in the park with her friends. ";
    }
    const auto r = run_tool({"perplexity", "-m", stories(), "-f", text, "-c", "64"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("seconds per window - ETA"), std::string::npos) << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(\[1\][0-9.]+,\[2\][0-9.]+,)"))) << r.out;
    ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+))"))) << r.out;
    const double ppl = std::stod(m[1]), err = std::stod(m[2]);
    EXPECT_GT(ppl, 1.0);
    EXPECT_GT(err, 0.0);
    EXPECT_LT(err, ppl);
    // --ctx is kept as an alias of -c.
    EXPECT_EQ(run_tool({"perplexity", "-m", stories(), "-f", text, "--ctx", "64"}).out, r.out);
    std::filesystem::remove_all(dir);
}

// The "+/-" of the final estimate, recomputed by hand: NLLs 1, 2, 3 have mean 2 and sample variance
// 1, so the mean's standard error is sqrt(1/3); through exp it is multiplied by e^2.
TEST(Cli, PerplexityErrorIsTheStandardErrorThroughExp) {
    minigpt::knn::perplexity_accumulator a;
    for (double nll : {1.0, 2.0, 3.0}) a.add_log_prob(-nll);
    EXPECT_NEAR(a.perplexity(), std::exp(2.0), 1e-12);
    EXPECT_NEAR(a.perplexity_error(), std::exp(2.0) * std::sqrt(1.0 / 3.0), 1e-12);
}

TEST(Cli, KnnBuildShowsProgress) {
    REQUIRE_TOOL();
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto dir = minigpt::test::temp_dir("cli-knn");
    const std::string text = (dir / "corpus.txt").string(), store = (dir / "store.knn").string();
    {
        std::ofstream os(text);
        for (int i = 0; i < 10; ++i) os << "The cat sat on the mat and looked at the sun. The dog ran to the park. ";
    }
    const auto r = run_tool({"knn-build", "-m", stories(), "-f", text, "-o", store, "-c", "32"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.err, m, std::regex(R"(knn-build: (\d+) / (\d+) windows \(100%\))"))) << r.err;
    EXPECT_EQ(m[1], m[2]);
    EXPECT_GT(std::stoi(m[2]), 3);
    EXPECT_NE(r.err.find("ETA"), std::string::npos) << r.err;
    std::filesystem::remove_all(dir);
}
