// `minigpt scaling`: compute-optimal parameters and tokens by the Chinchilla paper's three approaches
// (minigpt/frugal/scaling.hpp), the parametric loss, and Gopher against Chinchilla at the same compute.
#include <cstdio>
#include <iostream>
#include <string>

#include "command.hpp"
#include "minigpt/frugal/scaling.hpp"

namespace minigpt::tool {
namespace {

std::string si(double v) {
    const char* units[] = {"", "K", "M", "B", "T", "P"};
    int u = 0;
    while (v >= 1000 && u < 5) { v /= 1000; ++u; }
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3g%s", v, units[u]);
    return buf;
}

int run_scaling(const std::vector<std::string>& args) {
    flags f("usage: minigpt scaling (--flops C | --params N | --tokens D) [--rounded]\n"
            "compute-optimal N and D (C ~= 6 N D) by Hoffmann et al. 2022's approaches 1-3 and the loss\n"
            "L(N, D) = E + A/N^alpha + B/D^beta they predict");
    f.value({"--flops"}, "training compute budget in FLOPs (e.g. 5.76e23)")
        .value({"--params"}, "model parameters: the budget and tokens for which they are optimal")
        .value({"--tokens"}, "training tokens: the budget and parameters for which they are optimal")
        .boolean({"--rounded"}, "use Eq. 10's rounded exponents (0.34, 0.28) instead of 0.3392, 0.2849");
    f.parse(args);
    if (f.help()) { std::cout << f.usage(); return 0; }
    const int n_modes = f.has("--flops") + f.has("--params") + f.has("--tokens");
    if (n_modes != 1) throw usage_error("give exactly one of --flops, --params, --tokens");
    const scaling::parametric_loss L = f.on("--rounded") ? scaling::parametric_loss::rounded() : scaling::parametric_loss{};

    std::printf("parametric loss: E=%.2f A=%.1f B=%.1f alpha=%.4f beta=%.4f\n\n", L.E, L.A, L.B, L.alpha, L.beta);
    std::printf("%-44s %12s %12s %12s %9s %8s\n", "", "FLOPs", "params", "tokens", "tok/param", "loss");
    for (auto ap : scaling::k_approaches) {
        scaling::allocation r;
        if (f.has("--flops")) r = scaling::optimal_for_flops(f.real("--flops"), ap, L);
        else if (f.has("--params")) r = scaling::optimal_for_params(f.real("--params"), ap, L);
        else r = scaling::optimal_for_tokens(f.real("--tokens"), ap, L);
        std::printf("%-44s %12.3e %12s %12s %9.1f %8.4f\n", scaling::approach_name(ap), r.flops, si(r.n_params).c_str(),
                    si(r.n_tokens).c_str(), r.n_tokens / r.n_params, r.loss);
    }

    std::printf("\nGopher vs Chinchilla (C = 6 N D):\n");
    for (const auto& m : {scaling::k_gopher, scaling::k_chinchilla})
        std::printf("  %-11s %6s params, %6s tokens, C = %.3e FLOPs, predicted loss %.4f\n", m.name, si(m.n_params).c_str(),
                    si(m.n_tokens).c_str(), 6 * m.n_params * m.n_tokens, L(m.n_params, m.n_tokens));
    const double c_gopher = 6 * scaling::k_gopher.n_params * scaling::k_gopher.n_tokens;
    const auto best = scaling::optimal_for_flops(c_gopher, scaling::approach::parametric, L);
    std::printf("  at Gopher's compute, Chinchilla's 70B would see %s tokens: loss %.4f; the approach-3 optimum is %s params, "
                "%s tokens: loss %.4f\n",
                si(c_gopher / (6 * scaling::k_chinchilla.n_params)).c_str(),
                scaling::loss_at_fixed_compute(c_gopher, scaling::k_chinchilla.n_params, L), si(best.n_params).c_str(),
                si(best.n_tokens).c_str(), best.loss);
    return 0;
}

const register_command reg_scaling("scaling", "compute-optimal parameters and tokens for a budget (Chinchilla scaling laws)", run_scaling);

}  // namespace
}  // namespace minigpt::tool
