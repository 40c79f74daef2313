// Subcommand registry and a small llama.cpp-style flag parser for the `minigpt` tool.
//
// Each cmd_*.cpp defines one subcommand and registers it with a static
// `register_command`; main.cpp dispatches on argv[1]. Flags follow llama.cpp
// spellings where users know them (-m, -p, -n, -t, --temp, ...).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace minigpt::tool {

struct command {
    std::string name;
    std::string summary;
    std::function<int(const std::vector<std::string>&)> run;  // gets the arguments after the subcommand
};

inline std::vector<command>& registry() {
    static std::vector<command> r;
    return r;
}

struct register_command {
    register_command(std::string name, std::string summary, std::function<int(const std::vector<std::string>&)> run) {
        registry().push_back({std::move(name), std::move(summary), std::move(run)});
    }
};

// Thrown for a bad command line; main prints it with the subcommand's usage.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Thrown by flags::parse on --version; main prints the version and exits 0.
struct version_request {};

// The number of hardware threads (at least 1).
inline int hardware_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
}

// Parses "-x VALUE", "--long VALUE", "--long=VALUE" and boolean "--flag".
// Declare every flag first (with aliases), then parse; unknown flags are an error, and so is a
// positional argument unless the command declared it takes them (allow_positional). A value flag
// given twice keeps its last value for str() and every value for all() (repeatable -r).
class flags {
public:
    explicit flags(std::string usage) : usage_(std::move(usage)) {}

    flags& value(std::vector<std::string> names, std::string help, std::string default_value = {}) {
        add(std::move(names), std::move(help), true, std::move(default_value));
        return *this;
    }
    flags& boolean(std::vector<std::string> names, std::string help) {
        add(std::move(names), std::move(help), false, {});
        return *this;
    }
    // Positional arguments are accepted (and described by `help` in the usage).
    flags& allow_positional(std::string help) {
        positional_help_ = std::move(help);
        return *this;
    }

    void parse(const std::vector<std::string>& args) {
        for (std::size_t i = 0; i < args.size(); ++i) {
            std::string a = args[i];
            std::optional<std::string> inline_value;
            if (a.rfind("--", 0) == 0) {
                auto eq = a.find('=');
                if (eq != std::string::npos) { inline_value = a.substr(eq + 1); a = a.substr(0, eq); }
            }
            if (a == "-h" || a == "--help") { help_ = true; continue; }
            if (a == "--version") throw version_request{};
            auto it = alias_.find(a);
            if (it == alias_.end()) {
                if (!a.empty() && a[0] == '-' && a.size() > 1) throw usage_error("unknown flag " + a);
                if (positional_help_.empty())
                    throw usage_error("unexpected argument '" + args[i] + "' (options take a flag, e.g. -p TEXT for a prompt)");
                positional_.push_back(args[i]);
                continue;
            }
            auto& spec = specs_[it->second];
            if (spec.takes_value) {
                if (inline_value) spec.value = *inline_value;
                else if (i + 1 < args.size()) spec.value = args[++i];
                else throw usage_error("flag " + a + " needs a value");
            } else {
                spec.value = "1";
            }
            spec.all.push_back(spec.value);
            spec.set = true;
        }
    }

    bool help() const { return help_; }
    bool has(const std::string& name) const { return spec(name).set; }
    std::string str(const std::string& name) const { return spec(name).value; }
    std::string require(const std::string& name) const {
        if (!has(name) && spec(name).value.empty()) throw usage_error("missing required flag " + name);
        return str(name);
    }
    std::int64_t integer(const std::string& name) const { return parse_num<std::int64_t>(name); }
    double real(const std::string& name) const { return parse_num<double>(name); }
    bool on(const std::string& name) const { return has(name); }
    const std::vector<std::string>& positional() const { return positional_; }
    // Every value given for a repeatable flag, in order (empty when not given).
    const std::vector<std::string>& all(const std::string& name) const { return spec(name).all; }

    // A number that must lie in [lo, hi]; `expected` says what is allowed, for the error.
    std::int64_t integer_in(const std::string& name, std::int64_t lo, std::int64_t hi, const std::string& expected) const {
        const auto v = integer(name);
        if (v < lo || v > hi) throw usage_error("flag " + name + ": " + str(name) + " is out of range (" + expected + ")");
        return v;
    }
    double real_in(const std::string& name, double lo, double hi, const std::string& expected) const {
        const auto v = real(name);
        if (!(v >= lo && v <= hi)) throw usage_error("flag " + name + ": " + str(name) + " is out of range (" + expected + ")");
        return v;
    }

    std::string usage() const {
        std::string u = usage_ + "\n\noptions:\n";
        if (!positional_help_.empty()) u += "  " + positional_help_ + "\n";
        for (const auto& s : specs_) {
            std::string names;
            for (const auto& n : s.names) names += (names.empty() ? "" : ", ") + n;
            if (s.takes_value) names += " X";
            u += "  " + names;
            u += std::string(names.size() < 28 ? 28 - names.size() : 1, ' ') + s.help;
            if (s.takes_value && !s.value.empty() && !s.set) u += " (default: " + s.value + ")";
            u += "\n";
        }
        return u;
    }

private:
    struct spec_t {
        std::vector<std::string> names;
        std::string help;
        bool takes_value;
        std::string value;
        bool set = false;
        std::vector<std::string> all;  // every value given, for repeatable flags
    };
    void add(std::vector<std::string> names, std::string help, bool takes_value, std::string def) {
        for (const auto& n : names) alias_[n] = specs_.size();
        specs_.push_back({std::move(names), std::move(help), takes_value, std::move(def), false, {}});
    }
    const spec_t& spec(const std::string& name) const {
        auto it = alias_.find(name);
        if (it == alias_.end()) throw std::logic_error("flag not declared: " + name);
        return specs_[it->second];
    }
    template <class T> T parse_num(const std::string& name) const {
        const std::string v = str(name);
        try {
            std::size_t used = 0;
            T r;
            if constexpr (std::is_integral_v<T>) r = static_cast<T>(std::stoll(v, &used));
            else r = static_cast<T>(std::stod(v, &used));
            if (used != v.size()) throw std::invalid_argument(v);
            if constexpr (!std::is_integral_v<T>)
                if (!std::isfinite(r)) throw usage_error("flag " + name + ": '" + v + "' is not a finite number");
            return r;
        } catch (const std::logic_error&) {
            throw usage_error("flag " + name + ": '" + v + "' is not a number");
        }
    }

    std::string usage_;
    std::vector<spec_t> specs_;
    std::map<std::string, std::size_t> alias_;
    std::vector<std::string> positional_;
    std::string positional_help_;
    bool help_ = false;
};

}  // namespace minigpt::tool
