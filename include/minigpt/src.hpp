// The compiled-once half of a program built with MINIGPT_SEPARATE_COMPILATION (core/api.hpp):
// include this in exactly one translation unit (CMake's minigpt_add_library writes that file for
// you). It defines the MINIGPT_API functions — a context's construction and decode(), llm::load,
// generate() — and so compiles every kernel, file reader and tokenizer they reach, once.
#pragma once

#if !defined(MINIGPT_SEPARATE_COMPILATION)
#error "<minigpt/src.hpp> is for programs built with MINIGPT_SEPARATE_COMPILATION (define it in every translation unit); header-only programs need no source file"
#endif
#if defined(MINIGPT_API_DEFINITIONS)
#error "<minigpt/src.hpp> must come before any other minigpt header in its translation unit"
#endif
#define MINIGPT_IMPLEMENTATION 1

#include "minigpt/generate/generation.hpp"
#include "minigpt/model/context.hpp"
