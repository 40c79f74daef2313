// Scaling calculator against the Chinchilla paper's own projections (Hoffmann et al. 2022) and a
// brute-force minimisation of the parametric loss done here in double, independent of the closed form.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <iterator>
#include <string>

#include "minigpt/frugal/scaling.hpp"

using namespace minigpt;
using namespace minigpt::scaling;

namespace {

// Table 3 of the paper (approach 1): parameters -> FLOPs, tokens.
struct table3_row {
    double n_params, flops, n_tokens;
};
constexpr table3_row k_table3[] = {
    {400e6, 1.92e19, 8.0e9},    {1e9, 1.21e20, 20.2e9},    {10e9, 1.23e22, 205.1e9},
    {67e9, 5.76e23, 1.5e12},    {175e9, 3.85e24, 3.7e12},  {280e9, 9.90e24, 5.9e12},
    {520e9, 3.43e25, 11.0e12},  {1e12, 1.27e26, 21.2e12},  {10e12, 1.30e28, 216.2e12},
};

double rel(double got, double want) { return std::abs(got - want) / want; }

// Table A3 of the paper (appendix D.3): the same projections by approaches 2 and 3,
// parameters -> FLOPs, tokens. The paper prints 1.26e+24 FLOPs for approach 3 at 175B, but its own
// tokens column (12.0T) gives 6 N D = 1.26e+25 and the neighbouring rows agree: a typo, corrected here.
constexpr table3_row k_table_a3_approach2[] = {
    {400e6, 1.84e19, 7.7e9},    {1e9, 1.20e20, 20.0e9},    {10e9, 1.32e22, 219.5e9},
    {67e9, 6.88e23, 1.7e12},    {175e9, 4.54e24, 4.3e12},  {280e9, 1.18e25, 7.1e12},
    {520e9, 4.19e25, 13.4e12},  {1e12, 1.59e26, 26.5e12},  {10e12, 1.75e28, 292.0e12},
};
constexpr table3_row k_table_a3_approach3[] = {
    {400e6, 2.21e19, 9.2e9},    {1e9, 1.62e20, 27.1e9},    {10e9, 2.46e22, 410.1e9},
    {67e9, 1.71e24, 4.1e12},    {175e9, 1.26e25, 12.0e12}, {280e9, 3.52e25, 20.1e12},
    {520e9, 1.36e26, 43.5e12},  {1e12, 5.65e26, 94.1e12},  {10e12, 8.55e28, 1425.5e12},
};


}  // namespace

// --flops: the parameters the paper projects for each budget. The paper rounds a to 0.50 while its
// table follows a slightly smaller slope (0.498 end to end), so the projections drift up to 3.4% in N
// over nine orders of magnitude of compute.
TEST(Scaling, Approach1ReproducesTable3FromFlops) {
    for (const auto& row : k_table3) {
        const auto r = optimal_for_flops(row.flops, approach::minimum_over_curves);
        EXPECT_LT(rel(r.n_params, row.n_params), 0.04) << row.flops;
        EXPECT_LT(rel(r.n_tokens, row.flops / (6 * row.n_params)), 0.04) << row.flops;
    }
}

// --params: the budget for which N is optimal (the table's FLOPs column) and the tokens column.
// Errors in C are twice those in N (C ∝ N^2), hence 7.5%.
TEST(Scaling, Approach1ReproducesTable3FromParams) {
    for (const auto& row : k_table3) {
        const auto r = optimal_for_params(row.n_params, approach::minimum_over_curves);
        EXPECT_LT(rel(r.flops, row.flops), 0.075) << row.n_params;
        EXPECT_LT(rel(r.n_tokens, row.n_tokens), 0.075) << row.n_params;  // the table's tokens are rounded to 2-3 digits
    }
}

// --tokens: the budget for which D tokens is optimal, and the N that goes with it.
TEST(Scaling, Approach1ReproducesTable3FromTokens) {
    for (const auto& row : k_table3) {
        const auto r = optimal_for_tokens(row.n_tokens, approach::minimum_over_curves);
        EXPECT_LT(rel(r.n_params, row.n_params), 0.075) << row.n_tokens;
        EXPECT_NEAR(6 * r.n_params * r.n_tokens / r.flops, 1.0, 1e-9);
        EXPECT_NEAR(r.n_tokens / row.n_tokens, 1.0, 1e-9);
    }
}

// Approach 2 (a = 0.49, anchored on the main text's 63B at 5.76e23, not on this table) against
// Table A3's approach-2 columns, in each mode of the calculator. Eight rows agree within 1-2.6%; the
// 67B row sits 2.6% (N) / 5.1% (C) off the line through the others, so the bounds are set by it.
TEST(Scaling, Approach2ReproducesTableA3) {
    for (const auto& row : k_table_a3_approach2) {
        const auto from_flops = optimal_for_flops(row.flops, approach::isoflop);  // --flops
        EXPECT_LT(rel(from_flops.n_params, row.n_params), 0.03) << row.flops;
        EXPECT_LT(rel(from_flops.n_tokens, row.flops / (6 * row.n_params)), 0.03) << row.flops;
        const auto from_params = optimal_for_params(row.n_params, approach::isoflop);  // --params
        EXPECT_LT(rel(from_params.flops, row.flops), 0.055) << row.n_params;
        EXPECT_LT(rel(from_params.n_tokens, row.n_tokens), 0.05) << row.n_params;
        const auto from_tokens = optimal_for_tokens(row.n_tokens, approach::isoflop);  // --tokens
        EXPECT_LT(rel(from_tokens.n_params, row.n_params), 0.05) << row.n_tokens;
        EXPECT_LT(rel(from_tokens.flops, row.flops), 0.05) << row.n_tokens;
    }
}

// Approach 3 against Table A3's approach-3 columns. The closed-form optimum of the published fit
// (E, A, B, alpha = 0.3392, beta = 0.2849) reproduces the paper's 40B at Gopher's budget but NOT this
// table within a few percent: the table follows N ∝ C^0.4587 end to end, the fit's beta/(alpha+beta)
// is 0.4565, and the constant differs too, so the fit's N is below the table's by 2.8% at 400M growing
// to 7.5% at 10T (C from N: 6.5% to 19%). No (alpha, beta) with the published A and B gives the table's
// line (it would need alpha = 0.43, beta = 0.36), so the gap is the paper's, and is pinned here: the fit
// is below the table on every row, within 8% in N, and the gap grows with the budget.
TEST(Scaling, Approach3AgainstTableA3) {
    double previous_gap = 0;
    for (const auto& row : k_table_a3_approach3) {
        const auto from_flops = optimal_for_flops(row.flops, approach::parametric);
        const double gap = 1.0 - from_flops.n_params / row.n_params;
        EXPECT_GT(gap, 0.0) << row.flops;
        EXPECT_LT(gap, 0.08) << row.flops;
        if (row.n_params != 67e9) {  // the 67B row is off the table's own line (6 N D / C = 0.96)
            EXPECT_GT(gap, previous_gap - 0.002) << row.flops;
            previous_gap = gap;
        }
        const auto from_params = optimal_for_params(row.n_params, approach::parametric);
        EXPECT_GT(from_params.flops, row.flops) << row.n_params;
        EXPECT_LT(rel(from_params.flops, row.flops), 0.20) << row.n_params;
    }
    // The table's end-to-end slope, from its first and last rows.
    const auto& lo = k_table_a3_approach3[0];
    const auto& hi = k_table_a3_approach3[std::size(k_table_a3_approach3) - 1];
    const double slope = std::log(hi.n_params / lo.n_params) / std::log(hi.flops / lo.flops);
    EXPECT_NEAR(slope, 0.4587, 0.0005);
    EXPECT_NEAR(parametric_loss{}.a(), 0.4565, 0.0005);
}

// The paper's projections at Gopher's budget (Figure 1): 67B (approach 1), 63B (approach 2),
// 40B (approach 3, from the fitted constants, not anchored on anything here).
TEST(Scaling, ProjectionsAtGopherBudget) {
    EXPECT_LT(rel(optimal_for_flops(5.76e23, approach::minimum_over_curves).n_params, 67e9), 0.01);
    EXPECT_LT(rel(optimal_for_flops(5.76e23, approach::isoflop).n_params, 63e9), 0.01);
    EXPECT_LT(rel(optimal_for_flops(5.76e23, approach::parametric).n_params, 40e9), 0.03);
    // Eq. 10's rounded exponents give a visibly different answer (why the unrounded ones are default).
    EXPECT_GT(rel(optimal_for_flops(5.76e23, approach::parametric, parametric_loss::rounded()).n_params, 40e9), 0.15);
}

// The closed-form optimum of approach 3 equals a direct numeric minimisation of
// L(N, C / 6N) over N (golden-section search in log N, written here from the definition).
TEST(Scaling, ParametricOptimumMatchesBruteForce) {
    const parametric_loss L;
    for (double C : {1e18, 1e21, 5.76e23, 1e26, 1e28}) {
        auto f = [&](double logn) {
            const double n = std::exp(logn);
            return L.E + L.A / std::pow(n, L.alpha) + L.B / std::pow(C / (6 * n), L.beta);
        };
        double lo = std::log(1e3), hi = std::log(1e16);
        const double g = (std::sqrt(5.0) - 1) / 2;
        for (int i = 0; i < 200; ++i) {
            const double x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo);
            if (f(x1) < f(x2)) hi = x2; else lo = x1;
        }
        const double n_best = std::exp((lo + hi) / 2);
        const auto r = optimal_for_flops(C, approach::parametric);
        EXPECT_LT(rel(r.n_params, n_best), 1e-6) << C;
        EXPECT_NEAR(r.loss, f(std::log(n_best)), 1e-9) << C;
        // Any other split of the same compute is worse.
        EXPECT_LT(r.loss, loss_at_fixed_compute(C, r.n_params * 2));
        EXPECT_LT(r.loss, loss_at_fixed_compute(C, r.n_params / 2));
    }
    // The exponents of approach 3 as the paper reports them (Table 2: a = 0.46, b = 0.54).
    EXPECT_NEAR(L.a(), 0.46, 0.005);
    EXPECT_NEAR(L.b(), 0.54, 0.005);
}

// At Gopher's compute, Chinchilla's 70B / 1.4T split has lower predicted loss than Gopher's 280B / 300B.
TEST(Scaling, ChinchillaBeatsGopherAtSameCompute) {
    const parametric_loss L;
    const double lg = L(k_gopher.n_params, k_gopher.n_tokens);
    const double lc = L(k_chinchilla.n_params, k_chinchilla.n_tokens);
    // Recomputed by hand: 1.69 + 406.4/280e9^0.3392 + 410.7/300e9^0.2849.
    EXPECT_NEAR(lg, 1.69 + 406.4 / std::pow(280e9, 0.3392) + 410.7 / std::pow(300e9, 0.2849), 1e-12);
    EXPECT_LT(lc, lg);
    // Same compute: Chinchilla's parameters with Gopher's FLOPs still beat Gopher.
    EXPECT_LT(loss_at_fixed_compute(6 * k_gopher.n_params * k_gopher.n_tokens, k_chinchilla.n_params), lg);
}

TEST(Scaling, BadInputThrows) {
    EXPECT_THROW(optimal_for_flops(0, approach::parametric), error);
    EXPECT_THROW(optimal_for_params(-1, approach::isoflop), error);
    EXPECT_THROW(optimal_for_tokens(std::nan(""), approach::minimum_over_curves), error);
}

// The CLI prints each mode; its numbers parse back to the library's.
TEST(Scaling, CliModes) {
    for (std::string mode : {"--flops 5.76e23", "--params 70e9", "--tokens 1.4e12"}) {
        const std::string cmd = std::string(MINIGPT_TOOL) + " scaling " + mode + " 2>&1";
        FILE* p = popen(cmd.c_str(), "r");
        ASSERT_NE(p, nullptr);
        std::string out;
        char buf[512];
        while (std::fgets(buf, sizeof buf, p)) out += buf;
        ASSERT_EQ(pclose(p), 0) << out;
        EXPECT_NE(out.find("approach 3"), std::string::npos) << out;
        EXPECT_NE(out.find("Chinchilla"), std::string::npos) << out;
    }
    const std::string bad = std::string(MINIGPT_TOOL) + " scaling --flops abc >/dev/null 2>&1";
    EXPECT_NE(std::system(bad.c_str()), 0);
}
