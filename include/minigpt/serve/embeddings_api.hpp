// OpenAI's /v1/embeddings, without any HTTP: the request body parsed into token lists and the
// vectors written back in OpenAI's response shape.
//
// Request fields: input (a string, an array of strings, an array of token ids, or an array of
// token-id arrays; at most 2048 inputs, none empty), model (informational), encoding_format
// ("float", the default, or "base64": the little-endian float32 bytes, as OpenAI sends them and
// as the official clients ask for by default), dimensions (only the model's own width), user
// (ignored, as OpenAI does not act on it). Anything else with a wrong type or value is a 400
// naming the field. Strings get BOS when the vocabulary adds one, as `minigpt embed` does.
// Response: {"object":"list","data":[{"object":"embedding","index":i,"embedding":[...]}],
// "model":...,"usage":{"prompt_tokens":n,"total_tokens":n}}.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "minigpt/serve/openai_api.hpp"
#include "minigpt/text/tokenizer.hpp"

namespace minigpt::serve {

struct embedding_api_request {
    std::vector<std::vector<std::int32_t>> inputs;  // (inputs, tokens)
    bool base64 = false;
    std::string model;
};

inline constexpr std::size_t k_max_embedding_inputs = 2048;  // OpenAI's limit per request

namespace detail {

inline std::vector<std::int32_t> embedding_token_ids(const json& a, std::int64_t n_vocab) {
    std::vector<std::int32_t> ids;
    for (const auto& v : a) {
        if (!v.is_number_integer()) throw bad_request("'input' mixes token ids with other values", "input");
        const auto id = v.get<std::int64_t>();
        if (id < 0 || id >= n_vocab) throw bad_request("token id " + std::to_string(id) + " in 'input' is out of range", "input");
        ids.push_back(static_cast<std::int32_t>(id));
    }
    return ids;
}

}  // namespace detail

inline embedding_api_request parse_embedding_request(const json& body, const tokenizer& tok, std::int64_t n_vocab, std::int64_t n_embd) {
    using detail::field;
    if (!body.is_object()) throw bad_request("the request body must be a JSON object");
    static const char* const known[] = {"input", "model", "encoding_format", "dimensions", "user"};
    for (const auto& item : body.items()) {
        const std::string& key = item.key();  // not a structured binding: clang 14 cannot capture those
        if (std::find_if(std::begin(known), std::end(known), [&](const char* k) { return key == k; }) == std::end(known))
            throw bad_request("unknown field '" + key + "'", key);
    }
    embedding_api_request r;
    r.model = field<std::string>(body, "model", "");
    const std::string format = field<std::string>(body, "encoding_format", "float");
    if (format != "float" && format != "base64")
        throw bad_request("'encoding_format' must be \"float\" or \"base64\", got \"" + format + "\"", "encoding_format");
    r.base64 = format == "base64";
    if (body.contains("dimensions") && !body["dimensions"].is_null() && field<std::int64_t>(body, "dimensions", n_embd) != n_embd)
        throw bad_request("'dimensions' can only be this model's width, " + std::to_string(n_embd), "dimensions");
    const auto it = body.find("input");
    if (it == body.end() || it->is_null()) throw bad_request("'input' is required", "input");
    auto text = [&](const json& s) {
        if (s.get_ref<const std::string&>().empty()) throw bad_request("'input' contains an empty string", "input");
        return tok.encode(s.get_ref<const std::string&>(), tok.add_bos_default());
    };
    auto ids = [&](const json& a) {
        if (a.empty()) throw bad_request("'input' contains an empty token array", "input");
        return detail::embedding_token_ids(a, n_vocab);
    };
    if (it->is_string()) {
        r.inputs.push_back(text(*it));
    } else if (it->is_array()) {
        if (it->empty()) throw bad_request("'input' is an empty array", "input");
        if ((*it)[0].is_number_integer()) {
            r.inputs.push_back(ids(*it));
        } else {
            if (it->size() > k_max_embedding_inputs)
                throw bad_request("'input' has " + std::to_string(it->size()) + " items; at most " + std::to_string(k_max_embedding_inputs), "input");
            for (const auto& item : *it) {
                if (item.is_string()) r.inputs.push_back(text(item));
                else if (item.is_array()) r.inputs.push_back(ids(item));
                else throw bad_request("'input' items must be strings or token arrays, got " + std::string(item.type_name()), "input");
            }
        }
    } else {
        throw bad_request("'input' must be a string or an array, got " + std::string(it->type_name()), "input");
    }
    return r;
}

// Standard base64 of the vector's float32 bytes (little-endian, as on every platform minigpt runs on).
inline std::string base64_floats(std::span<const float> v) {
    static const char* const table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::vector<unsigned char> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    std::string out;
    out.reserve((b.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < b.size(); i += 3) {
        const std::uint32_t n = (static_cast<std::uint32_t>(b[i]) << 16) | (i + 1 < b.size() ? static_cast<std::uint32_t>(b[i + 1]) << 8 : 0u) |
                                (i + 2 < b.size() ? static_cast<std::uint32_t>(b[i + 2]) : 0u);
        out += table[(n >> 18) & 63];
        out += table[(n >> 12) & 63];
        out += i + 1 < b.size() ? table[(n >> 6) & 63] : '=';
        out += i + 2 < b.size() ? table[n & 63] : '=';
    }
    return out;
}

inline json embedding_response_json(const std::vector<std::vector<float>>& vectors, bool base64, std::int64_t n_tokens,
                                    const std::string& model) {
    json data = json::array();
    for (std::size_t i = 0; i < vectors.size(); ++i) {
        json item{{"object", "embedding"}, {"index", i}};
        if (base64) item["embedding"] = base64_floats(vectors[i]);
        else item["embedding"] = vectors[i];
        data.push_back(std::move(item));
    }
    return json{{"object", "list"}, {"data", std::move(data)}, {"model", model}, {"usage", {{"prompt_tokens", n_tokens}, {"total_tokens", n_tokens}}}};
}

}  // namespace minigpt::serve
