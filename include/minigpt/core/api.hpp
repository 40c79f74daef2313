// Header-only by default, or compiled once: the switch for the few functions behind the README's
// ten-line example (loading a model, a context's decode, generate()).
//
// By default every function is inline and a program needs nothing but the headers. A program that
// defines MINIGPT_SEPARATE_COMPILATION (in every translation unit, as the CMake target
// minigpt::compiled does) sees only the declarations of the functions marked MINIGPT_API, and one
// translation unit of it includes <minigpt/src.hpp>, which defines them. Its other translation units
// then include only light headers (<minigpt/model.hpp> pulls no kernels, tokenizers or file readers),
// so they compile in about a second instead of tens of seconds. The scheme is Asio's
// (ASIO_SEPARATE_COMPILATION / asio/impl/src.hpp).
#pragma once

#if defined(MINIGPT_SEPARATE_COMPILATION)
#define MINIGPT_API
#if defined(MINIGPT_IMPLEMENTATION)
#define MINIGPT_API_DEFINITIONS 1
#else
#define MINIGPT_API_DEFINITIONS 0
#endif
#else
#define MINIGPT_API inline
#define MINIGPT_API_DEFINITIONS 1
#endif
