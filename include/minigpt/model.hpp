// Umbrella header: what a program needs to load a model and generate text with it, and no more
// (the README's ten-line example needs only this include).
//
// llm::load (model + tokenizer), context (KV cache, decode, logits), generation_params / generate()
// and the sampler chain, minigpt::error and the version macros. Writing GGUF files
// (io/gguf_writer.hpp), random-weight models (model/synth.hpp), the kernels themselves
// (kernels/*.hpp), Eigen views (core/eigen.hpp), prompting (prompt.hpp) and kNN-LM (knn.hpp) have
// their own headers, so that a program that only generates does not compile them.
#pragma once

#include "minigpt/core/error.hpp"
#include "minigpt/generate/generation.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/model.hpp"
#include "minigpt/version.hpp"
