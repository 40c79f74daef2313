// Umbrella header: what a program needs to load a model and generate text with it, and no more
// (the README's ten-line example needs only this include).
//
// llm::load (model + tokenizer), context (KV cache, decode, logits), generation_params / generate()
// and the sampling parameters, minigpt::error and the version macros. Writing GGUF files
// (io/gguf_writer.hpp), random-weight models (model/synth.hpp), the kernels themselves
// (kernels/*.hpp), Eigen views (core/eigen.hpp), prompting (prompt.hpp) and kNN-LM (knn.hpp) have
// their own headers, so that a program that only generates does not compile them.
//
// Header-only (the default), this also brings the definitions: the model class (model/model.hpp),
// the tokenizer, the sampler chain and every kernel a model file may need, all inline. With
// MINIGPT_SEPARATE_COMPILATION (core/api.hpp; CMake: minigpt_add_library) it brings declarations
// only and compiles in about a second; include model/model.hpp, text/tokenizer.hpp or
// generate/sampler.hpp yourself to reach the model's, tokenizer's or sampler's own members.
#pragma once

#include "minigpt/core/api.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/generate/generation_decl.hpp"
#include "minigpt/model/context_decl.hpp"
#include "minigpt/version.hpp"

#if !defined(MINIGPT_SEPARATE_COMPILATION)
#include "minigpt/generate/generation.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/model.hpp"
#endif
