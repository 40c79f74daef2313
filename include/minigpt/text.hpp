// minigpt text layer: tokenizers and their vocabularies (thin umbrella header).
//
// tokenizer / stream_decoder (text/tokenizer.hpp), vocab_data and its sources: GGUF keys,
// llama2.c's tokenizer.bin, the synthetic llama2.c vocabulary (text/vocab.hpp, text/vocab_gguf.hpp),
// the pre-tokenizers and their regex engine (text/pretokenizer.hpp, text/regex.hpp), and the
// UTF-8 / Unicode helpers they use (text/utf8.hpp, text/unicode*.hpp).
#pragma once

#include "minigpt/text/pretokenizer.hpp"
#include "minigpt/text/tokenizer.hpp"
#include "minigpt/text/unicode.hpp"
#include "minigpt/text/unicode_pretokenize.hpp"
#include "minigpt/text/utf8.hpp"
#include "minigpt/text/vocab.hpp"
#include "minigpt/text/vocab_gguf.hpp"
