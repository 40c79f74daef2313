// Umbrella header: everything a program needs to load a model and run it.
#pragma once

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/half.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/io/llama2c.hpp"
#include "minigpt/kernels/matmul.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/model/config.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/model.hpp"
#include "minigpt/model/synth.hpp"
