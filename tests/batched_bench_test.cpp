// `minigpt batched-bench` as a user runs it: llama-batched-bench's table (columns, one row per
// (PP, TG, B) that fits -c, N_KV = B*(PP+TG) or PP+B*TG with -pps) and its jsonl keys, with the
// speeds consistent with the times (S_PP = prompt tokens / T_PP, S_TG = B*TG / T_TG, S = N_KV / T).
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_data.hpp"

namespace {

using minigpt::test::shared_path;

#define REQUIRE_TOOL_AND_MODEL()                                                                                   \
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "the minigpt tool is not built (" << MINIGPT_TOOL << ")"; \
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf")

std::string tool(const std::string& args) {
    return std::string(MINIGPT_TOOL) + " batched-bench -m " + shared_path("models/stories260K.gguf") + " " + args + " 2>&1";
}

std::vector<std::string> lines_of(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string line;
    while (std::getline(ss, line)) out.push_back(line);
    return out;
}

TEST(BatchedBench, TableHasLlamaBatchedBenchColumnsAndRows) {
    REQUIRE_TOOL_AND_MODEL();
    std::string out;
    ASSERT_EQ(minigpt::test::run(tool("-c 512 -b 32 -ub 16 -npp 20 -ntg 4 -npl 1,3,100 -t 1"), &out), 0) << out;
    const auto lines = lines_of(out);
    const std::regex header(R"(^\|\s*PP \|\s*TG \|\s*B \|\s*N_KV \|\s*T_PP s \|\s*S_PP t/s \|\s*T_TG s \|\s*S_TG t/s \|\s*T s \|\s*S t/s \|$)");
    const std::regex row(R"(^\|\s*(\d+) \|\s*(\d+) \|\s*(\d+) \|\s*(\d+) \|\s*([\d.]+) \|\s*([\d.]+) \|\s*([\d.]+) \|\s*([\d.]+) \|\s*([\d.]+) \|\s*([\d.]+) \|$)");
    int n_header = 0;
    std::vector<std::vector<long long>> rows;
    for (const auto& l : lines) {
        if (std::regex_match(l, header)) ++n_header;
        std::smatch m;
        if (std::regex_match(l, m, row)) rows.push_back({std::stoll(m[1]), std::stoll(m[2]), std::stoll(m[3]), std::stoll(m[4])});
    }
    EXPECT_EQ(n_header, 1) << out;
    // B = 100 needs 2400 positions > -c 512: skipped, as llama-batched-bench does.
    ASSERT_EQ(rows.size(), 2u) << out;
    EXPECT_EQ(rows[0], (std::vector<long long>{20, 4, 1, 24}));
    EXPECT_EQ(rows[1], (std::vector<long long>{20, 4, 3, 72}));
}

TEST(BatchedBench, JsonlLinesHaveItsKeysAndConsistentSpeeds) {
    REQUIRE_TOOL_AND_MODEL();
    for (const bool shared : {false, true}) {
        std::string out;
        ASSERT_EQ(minigpt::test::run(tool("-c 1024 -b 64 -ub 32 -npp 17 -ntg 5 -npl 2,4 -t 1 --output-format jsonl" +
                                          std::string(shared ? " -pps" : "")),
                                     &out),
                  0)
            << out;
        std::vector<nlohmann::json> objs;
        for (const auto& l : lines_of(out))
            if (!l.empty() && l[0] == '{') objs.push_back(nlohmann::json::parse(l));
        ASSERT_EQ(objs.size(), 2u) << out;
        for (std::size_t i = 0; i < objs.size(); ++i) {
            const auto& j = objs[i];
            for (const char* key : {"pp", "tg", "pl", "n_kv", "t_pp", "speed_pp", "t_tg", "speed_tg", "t", "speed", "n_kv_max", "n_batch",
                                    "n_ubatch", "is_pp_shared"})
                EXPECT_TRUE(j.contains(key)) << key;
            const long long pl = i == 0 ? 2 : 4;
            EXPECT_EQ(j["pp"], 17);
            EXPECT_EQ(j["tg"], 5);
            EXPECT_EQ(j["pl"], pl);
            EXPECT_EQ(j["is_pp_shared"], shared ? 1 : 0);
            EXPECT_EQ(j["n_kv"], shared ? 17 + pl * 5 : pl * (17 + 5));
            const double t_pp = j["t_pp"], t_tg = j["t_tg"], t = j["t"];
            EXPECT_GT(t_pp, 0.0);
            EXPECT_GT(t_tg, 0.0);
            EXPECT_NEAR(t, t_pp + t_tg, 1e-6 * t + 1e-9);
            EXPECT_NEAR(j["speed_pp"].get<double>(), (shared ? 17.0 : 17.0 * static_cast<double>(pl)) / t_pp, 1e-6 * j["speed_pp"].get<double>());
            EXPECT_NEAR(j["speed_tg"].get<double>(), 5.0 * static_cast<double>(pl) / t_tg, 1e-6 * j["speed_tg"].get<double>());
            EXPECT_NEAR(j["speed"].get<double>(), j["n_kv"].get<double>() / t, 1e-6 * j["speed"].get<double>());
        }
    }
}

TEST(BatchedBench, BadListsAreRejected) {
    REQUIRE_TOOL_AND_MODEL();
    std::string out;
    EXPECT_NE(minigpt::test::run(tool("-npl 0"), &out), 0);
    EXPECT_NE(out.find("-npl"), std::string::npos) << out;
    EXPECT_NE(minigpt::test::run(tool("-npp 1,x"), &out), 0);
    EXPECT_NE(minigpt::test::run(tool("--output-format csv"), &out), 0);
}

}  // namespace
