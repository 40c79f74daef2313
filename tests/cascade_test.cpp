// LLM cascade: scripted stages of known accuracy and informative scores; fitted thresholds reach the
// target accuracy on held-out questions at lower cost than always asking the strongest model. Also a
// hand-solved tiny fit, scripted text sessions as stages, and the judge scorer against a softmax
// computed here from a real model's logits.
#include <gtest/gtest.h>

#include <random>

#include "minigpt/frugal/cascade.hpp"
#include "minigpt/generate/scripted_session.hpp"
#include "test_data.hpp"

using namespace minigpt;
using namespace minigpt::frugal;

namespace {

// A scripted "model": answers question q correctly with probability `accuracy` (a fixed draw per
// question and stage), and its confidence score is higher, on average, when it is right.
struct scripted_model {
    double accuracy;
    std::uint32_t seed;
    std::size_t n_generated;

    bool right(std::size_t q) const {
        std::mt19937 rng(seed * 7919u + static_cast<std::uint32_t>(q));
        return std::uniform_real_distribution<double>(0, 1)(rng) < accuracy;
    }
    double confidence(std::size_t q) const {
        std::mt19937 rng(seed * 104729u + static_cast<std::uint32_t>(q) + 17u);
        const double noise = std::normal_distribution<double>(0, 0.15)(rng);
        return (right(q) ? 0.7 : 0.35) + noise;
    }
};

std::string truth(std::size_t q) { return "answer-" + std::to_string(q); }

std::size_t question_id(const std::string& question) { return std::stoul(question.substr(question.find('#') + 1)); }

cascade_stage make_stage(const std::string& name, scripted_model m, double price_in, double price_out) {
    cascade_stage s;
    s.name = name;
    s.cost_per_1k_prompt = price_in;
    s.cost_per_1k_generated = price_out;
    s.answer = [m](const std::string& question) {
        const auto q = question_id(question);
        stage_answer a;
        a.text = m.right(q) ? truth(q) : "wrong-" + std::to_string(q);
        a.n_prompt_tokens = 100;
        a.n_generated_tokens = m.n_generated;
        a.mean_logprob = std::log(std::clamp(m.confidence(q), 1e-3, 1.0));
        return a;
    };
    return s;
}

std::vector<std::string> questions(std::size_t from, std::size_t n) {
    std::vector<std::string> qs;
    for (std::size_t i = 0; i < n; ++i) qs.push_back("question #" + std::to_string(from + i));
    return qs;
}

}  // namespace

TEST(Cascade, FittedThresholdsReachTargetCheaperThanStrongest) {
    // Prices in the ratio of small / medium / large hosted models.
    std::vector<cascade_stage> stages = {
        make_stage("small", {0.60, 1, 8}, 0.1, 0.2),
        make_stage("medium", {0.78, 2, 8}, 1.0, 2.0),
        make_stage("large", {0.92, 3, 8}, 10.0, 30.0),
    };
    const auto scorer = logprob_scorer();
    auto correct = [](const std::vector<std::string>& qs) {
        return [qs](std::size_t i, const std::string& a) { return a == truth(question_id(qs[i])); };
    };
    const auto dev = questions(0, 600);
    const auto outcomes = collect_outcomes(stages, scorer, dev, correct(dev));
    const double target = 0.90;
    const auto fit = fit_thresholds(outcomes, target);
    ASSERT_TRUE(fit.reached);
    EXPECT_GE(fit.best.accuracy, target);
    EXPECT_LT(fit.best.cost, fit.strongest.cost);
    // The curve is a Pareto frontier.
    for (std::size_t i = 1; i < fit.curve.size(); ++i) {
        EXPECT_GT(fit.curve[i].cost, fit.curve[i - 1].cost - 1e-12);
        EXPECT_GT(fit.curve[i].accuracy, fit.curve[i - 1].accuracy);
    }

    // Held-out questions: run the cascade for real with the fitted thresholds.
    for (std::size_t s = 0; s < stages.size(); ++s) stages[s].threshold = fit.best.thresholds[s];
    const auto test = questions(10000, 600);
    double cost = 0, strongest_cost = 0;
    std::size_t right = 0, strongest_right = 0;
    std::vector<std::size_t> per_stage(stages.size(), 0);
    for (const auto& q : test) {
        const auto r = run_cascade(stages, scorer, q);
        cost += r.cost;
        right += r.answer == truth(question_id(q));
        ++per_stage[r.stage];
        const auto a = stages.back().answer(q);
        strongest_cost += stages.back().cost(a);
        strongest_right += a.text == truth(question_id(q));
    }
    const double acc = double(right) / double(test.size());
    const double strongest_acc = double(strongest_right) / double(test.size());
    std::printf("dev: cascade acc %.3f cost %.4f/query (thresholds %.3f %.3f) vs strongest acc %.3f cost %.4f; %zu settings\n",
                fit.best.accuracy, fit.best.cost, fit.best.thresholds[0], fit.best.thresholds[1], fit.strongest.accuracy,
                fit.strongest.cost, fit.n_settings);
    std::printf("held out: cascade acc %.3f cost %.4f/query (answered by stage: %zu %zu %zu) vs strongest acc %.3f cost %.4f\n", acc,
                cost / double(test.size()), per_stage[0], per_stage[1], per_stage[2], strongest_acc,
                strongest_cost / double(test.size()));
    EXPECT_GE(acc, target - 0.03);  // sampling noise of 600 held-out questions
    EXPECT_LT(cost, 0.8 * strongest_cost);
}

// Four questions, two stages, solved by hand: stage 0 costs 1 and is right on q0, q1 (scores 0.9, 0.8)
// and wrong on q2, q3 (scores 0.7, 0.2); stage 1 costs 10 and is always right.
// Threshold 0.8: q0, q1 accepted (cost 1 each), q2, q3 escalate (11 each): accuracy 1, cost 24/4 = 6.
TEST(Cascade, TinyFitSolvedByHand) {
    std::vector<std::vector<dev_outcome>> o(2);
    const double score[] = {0.9, 0.8, 0.7, 0.2};
    for (int q = 0; q < 4; ++q) {
        o[0].push_back({score[q], q < 2, 1.0});
        o[1].push_back({0.0, true, 10.0});
    }
    const auto fit = fit_thresholds(o, 1.0);
    ASSERT_TRUE(fit.reached);
    EXPECT_DOUBLE_EQ(fit.best.thresholds[0], 0.8);
    EXPECT_DOUBLE_EQ(fit.best.cost, 6.0);
    EXPECT_DOUBLE_EQ(fit.best.accuracy, 1.0);
    EXPECT_DOUBLE_EQ(fit.strongest.cost, 10.0);
    // Target 0.5: stage 0 alone (threshold -inf: always accept) costs 1 and gets 2 of 4.
    const auto cheap = fit_thresholds(o, 0.5);
    EXPECT_DOUBLE_EQ(cheap.best.cost, 1.0);
    EXPECT_DOUBLE_EQ(cheap.best.accuracy, 0.5);
    // Unreachable target: the most accurate setting, flagged.
    o[1][3].correct = false;
    const auto none = fit_thresholds(o, 1.0);
    EXPECT_FALSE(none.reached);
    EXPECT_DOUBLE_EQ(none.best.accuracy, 0.75);
    EXPECT_THROW(fit_thresholds({}, 0.5), error);
}

// Stages backed by scripted text sessions: the cheap one's answer is rejected by the scorer, the
// strong one answers; the result names the stage and the cost of both calls.
TEST(Cascade, ScriptedSessionsEscalate) {
    auto cheap = std::make_shared<scripted_session>(std::vector<scripted_reply>{" Lyon"});
    auto strong = std::make_shared<scripted_session>(std::vector<scripted_reply>{" Paris"});
    generation_options go;
    go.sampling = sampling_params::greedy();
    std::vector<cascade_stage> stages(2);
    stages[0] = {"cheap", session_stage(cheap, "Q: ", "\nA:", go), 1.0, 2.0, 0.5};
    stages[1] = {"strong", session_stage(strong, "Q: ", "\nA:", go), 10.0, 20.0};
    auto scorer = [](const std::string&, const stage_answer& a) { return a.text == " Paris" ? 1.0 : 0.0; };
    const auto r = run_cascade(stages, scorer, "capital of France?");
    EXPECT_EQ(r.answer, " Paris");
    EXPECT_EQ(r.stage, 1u);
    ASSERT_EQ(r.steps.size(), 2u);
    EXPECT_FALSE(r.steps[0].accepted);
    // "Q: capital of France?\nA:" is 24 bytes = 6 scripted tokens; " Lyon" and " Paris" are 2 tokens each.
    EXPECT_EQ(r.steps[0].answer.n_prompt_tokens, 6u);
    EXPECT_DOUBLE_EQ(r.cost, (6 * 1.0 + 2 * 2.0) / 1000 + (6 * 10.0 + 2 * 20.0) / 1000);
    // A skipped first stage is neither called nor paid.
    stages[0].threshold = std::numeric_limits<double>::infinity();
    const auto s = run_cascade(stages, scorer, "capital of France?");
    EXPECT_EQ(s.steps.size(), 1u);
    EXPECT_DOUBLE_EQ(s.cost, (6 * 10.0 + 2 * 20.0) / 1000);
}

// The judge scorer equals the two-way softmax of the judge's logits for " yes" and " no", computed here.
TEST(Cascade, JudgeScorerIsTheYesNoSoftmax) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    const llm judge = llm::load(test::shared_path("models/gpt2-tiny.gguf"));
    const auto scorer = judge_scorer(judge, {.n_ctx = 128});
    stage_answer a;
    a.text = "Paris";
    const double p = scorer("What is the capital of France?", a);
    context ctx(judge.weights, {.n_ctx = 128});
    ctx.decode(judge.vocab->encode(judge_prompt("What is the capital of France?", "Paris"), judge.vocab->add_bos_default()));
    const auto row = ctx.logits(0);
    const auto yes = judge.vocab->encode(" yes", false)[0], no = judge.vocab->encode(" no", false)[0];
    const double want = 1.0 / (1.0 + std::exp(double(row[static_cast<std::size_t>(no)]) - double(row[static_cast<std::size_t>(yes)])));
    EXPECT_NEAR(p, want, 1e-9);
    EXPECT_GT(p, 0.0);
    EXPECT_LT(p, 1.0);
}

// A model stage reports the mean token log-probability, which the logprob scorer reads.
TEST(Cascade, ModelStageReportsMeanLogprob) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(test::shared_path("models/stories260K.gguf"));
    generation_params gp;
    gp.max_tokens = 8;
    gp.sampling = sampling_params::greedy();
    const auto stage = model_stage(lm, {.n_ctx = 128}, gp);
    const auto a = stage("Once upon a time");
    EXPECT_EQ(a.n_generated_tokens, 8u);
    EXPECT_FALSE(std::isnan(a.mean_logprob));
    EXPECT_LT(a.mean_logprob, 0.0);
    // Recompute every generated token's log-softmax step by step from a fresh context.
    context g(lm.weights, {.n_ctx = 128});
    const auto prompt = lm.vocab->encode("Once upon a time", lm.vocab->add_bos_default());
    const auto c = generate_completion(lm, g, prompt, gp);
    ASSERT_EQ(c.tokens.size(), 8u);
    context ctx(lm.weights, {.n_ctx = 128});
    ctx.decode(prompt);
    double sum = 0;
    for (auto id : c.tokens) {
        const auto row = ctx.logits(0);
        double mx = -1e30, s = 0;
        for (float v : row) mx = std::max(mx, double(v));
        for (float v : row) s += std::exp(double(v) - mx);
        sum += double(row[static_cast<std::size_t>(id)]) - mx - std::log(s);
        ctx.decode(std::span(&id, 1));
    }
    EXPECT_NEAR(a.mean_logprob, sum / 8.0, 1e-5);
}
