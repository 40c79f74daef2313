// File helpers shared by the minigpt subcommands: whole-file reads and token-id lists.
#pragma once

#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"

namespace minigpt::tool {

inline std::string read_file(const std::string& path) {
    // A directory opens as a stream on Linux and fails inside the first read ("basic_filebuf::underflow").
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw io_error("'" + path + "' is a directory, not a file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error("cannot open '" + path + "'");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw io_error("error reading '" + path + "'");
    return text;
}

// Token ids separated by whitespace or commas (brackets ignored, so "[1, 2, 3]" works too).
// `origin` names the file or flag in error messages.
inline std::vector<std::int32_t> parse_ids(const std::string& text, const std::string& origin) {
    std::vector<std::int32_t> ids;
    std::size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '[' || c == ']') {
            ++i;
            continue;
        }
        std::size_t end = i;
        if (text[end] == '-') ++end;
        while (end < text.size() && text[end] >= '0' && text[end] <= '9' && end - i < 12) ++end;
        const std::string number = text.substr(i, end - i);
        if (number.empty() || number == "-" || (end < text.size() && text[end] >= '0' && text[end] <= '9'))
            throw error(origin + ": expected a token id at byte " + std::to_string(i) + ", found '" + text.substr(i, 1) + "'");
        const long long v = std::stoll(number);
        if (v < INT32_MIN || v > INT32_MAX) throw error(origin + ": token id " + number + " is out of range");
        ids.push_back(static_cast<std::int32_t>(v));
        i = end;
    }
    return ids;
}

}  // namespace minigpt::tool
