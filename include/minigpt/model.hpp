// Umbrella header: everything a program needs to load a model and run it.
#pragma once

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/half.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/core/threads.hpp"
