// Compute-optimal model size and training tokens (Hoffmann et al. 2022, "Training Compute-Optimal
// Large Language Models", the Chinchilla paper), for `minigpt scaling` and planning code.
//
// Training compute C ~= 6 N D FLOPs for N parameters and D tokens. The paper estimates the
// loss-minimising N_opt(C), D_opt(C) three ways:
//   Approach 1 (minimum over training curves) and 2 (IsoFLOP profiles) fit power laws
//     N_opt = k_N C^a, D_opt = k_D C^b with a + b = 1 (since C = 6 N D); the paper reports a and b
//     (Table 2: 0.50/0.50 and 0.49/0.51) and projections, not k_N. We anchor k_N on the paper's own
//     projection at Gopher's budget of 5.76e23 FLOPs (Table 3: 67B for approach 1; Figure 1 / Section 3:
//     63B for approach 2); k_D = 1 / (6 k_N) follows from C = 6 N D.
//   Approach 3 fits the parametric loss L(N, D) = E + A / N^alpha + B / D^beta with E = 1.69,
//     A = 406.4, B = 410.7, alpha = 0.3392, beta = 0.2849 (printed rounded as 0.34 and 0.28 in Eq. 10;
//     the rounded exponents move the optimum at 5.76e23 from 40B to 32B, so the unrounded ones are
//     the default). Minimising L subject to 6 N D = C gives in closed form
//       N_opt = G (C/6)^(beta/(alpha+beta)),  D_opt = G^-1 (C/6)^(alpha/(alpha+beta)),
//       G = (alpha A / (beta B))^(1/(alpha+beta)).
// Every mode also works backwards: the compute (and the other quantity) for which a given N or D
// is optimal, by inverting the power law.
#pragma once

#include <array>
#include <cmath>
#include <string>

#include "minigpt/core/error.hpp"

namespace minigpt::scaling {

inline constexpr double k_flops_per_param_token = 6.0;
inline constexpr double k_gopher_flops = 5.76e23;  // the paper's Gopher budget (Table 3's unit)

struct parametric_loss {
    double E = 1.69, A = 406.4, B = 410.7, alpha = 0.3392, beta = 0.2849;

    double operator()(double n_params, double n_tokens) const {
        if (!(n_params > 0) || !(n_tokens > 0)) throw error("scaling: parameters and tokens must be positive");
        return E + A / std::pow(n_params, alpha) + B / std::pow(n_tokens, beta);
    }
    double G() const { return std::pow(alpha * A / (beta * B), 1.0 / (alpha + beta)); }
    double a() const { return beta / (alpha + beta); }   // N_opt ∝ C^a
    double b() const { return alpha / (alpha + beta); }  // D_opt ∝ C^b

    // The paper's Eq. 10 as printed (rounded exponents), for comparison.
    static parametric_loss rounded() { return {1.69, 406.4, 410.7, 0.34, 0.28}; }
};

enum class approach { minimum_over_curves = 1, isoflop = 2, parametric = 3 };

inline const char* approach_name(approach a) {
    switch (a) {
        case approach::minimum_over_curves: return "approach 1 (minimum over training curves)";
        case approach::isoflop: return "approach 2 (IsoFLOP profiles)";
        case approach::parametric: return "approach 3 (parametric loss fit)";
    }
    return "?";
}

struct allocation {
    double flops = 0, n_params = 0, n_tokens = 0;
    double loss = 0;  // parametric_loss at (n_params, n_tokens)
};

// N_opt = k C^a for one approach, as (k, a).
struct power_law {
    double k, a;
};

inline power_law params_law(approach ap, const parametric_loss& L = {}) {
    switch (ap) {
        case approach::minimum_over_curves: return {67e9 / std::pow(k_gopher_flops, 0.50), 0.50};
        case approach::isoflop: return {63e9 / std::pow(k_gopher_flops, 0.49), 0.49};
        case approach::parametric: return {L.G() / std::pow(k_flops_per_param_token, L.a()), L.a()};
    }
    throw error("scaling: unknown approach");
}

inline void check_positive(double v, const char* what) {
    if (!(v > 0) || !std::isfinite(v)) throw error(std::string("scaling: ") + what + " must be a positive finite number");
}

inline allocation finish(const parametric_loss& L, double flops, double n_params) {
    allocation r;
    r.flops = flops;
    r.n_params = n_params;
    r.n_tokens = flops / (k_flops_per_param_token * n_params);
    r.loss = L(r.n_params, r.n_tokens);
    return r;
}

// Compute-optimal N and D for a FLOP budget.
inline allocation optimal_for_flops(double flops, approach ap, const parametric_loss& L = {}) {
    check_positive(flops, "FLOPs");
    const auto law = params_law(ap, L);
    return finish(L, flops, law.k * std::pow(flops, law.a));
}

// The budget (and D) for which N parameters are compute-optimal.
inline allocation optimal_for_params(double n_params, approach ap, const parametric_loss& L = {}) {
    check_positive(n_params, "parameters");
    const auto law = params_law(ap, L);
    return finish(L, std::pow(n_params / law.k, 1.0 / law.a), n_params);
}

// The budget (and N) for which D tokens are compute-optimal: D = C / (6 k C^a) = C^(1-a) / (6k).
inline allocation optimal_for_tokens(double n_tokens, approach ap, const parametric_loss& L = {}) {
    check_positive(n_tokens, "tokens");
    const auto law = params_law(ap, L);
    const double flops = std::pow(n_tokens * k_flops_per_param_token * law.k, 1.0 / (1.0 - law.a));
    return finish(L, flops, law.k * std::pow(flops, law.a));
}

inline constexpr std::array<approach, 3> k_approaches = {approach::minimum_over_curves, approach::isoflop, approach::parametric};

// Named models of the paper: Gopher (280B parameters, 300B tokens) and Chinchilla (70B, 1.4T).
struct named_model {
    const char* name;
    double n_params, n_tokens;
};
inline constexpr named_model k_gopher{"Gopher", 280e9, 300e9};
inline constexpr named_model k_chinchilla{"Chinchilla", 70e9, 1.4e12};

// Loss of N parameters trained with the tokens a budget of `flops` affords (the IsoFLOP curve).
inline double loss_at_fixed_compute(double flops, double n_params, const parametric_loss& L = {}) {
    check_positive(flops, "FLOPs");
    check_positive(n_params, "parameters");
    return L(n_params, flops / (k_flops_per_param_token * n_params));
}

}  // namespace minigpt::scaling
