# ctest script: with MINIGPT_SEPARATE_COMPILATION, the README example (tests/consumer/main.cpp) must
# reach only the light headers below, none of the kernels, SIMD, tokenizers or file readers (the
# reason its translation unit compiles in about a second; docs/benchmarks.md, "Compile cost").
# A new include in one of these headers fails here, so that it is a decision rather than an accident.
cmake_policy(SET CMP0057 NEW)  # if(IN_LIST)
foreach(v CXX SOURCE_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "${v} not set")
  endif()
endforeach()
execute_process(COMMAND ${CXX} -std=c++20 -DMINIGPT_SEPARATE_COMPILATION -DCONSUMER_PACKAGE_VERSION=""
                        -I${SOURCE_DIR}/include -MM ${SOURCE_DIR}/tests/consumer/main.cpp
                RESULT_VARIABLE rc OUTPUT_VARIABLE deps ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${CXX} -MM failed: ${err}")
endif()
set(allowed
  minigpt/model.hpp minigpt/version.hpp minigpt/core/api.hpp minigpt/core/error.hpp minigpt/core/dtype.hpp
  minigpt/generate/generation_decl.hpp minigpt/generate/logprobs.hpp minigpt/generate/sampling_params.hpp
  minigpt/generate/text_session.hpp minigpt/model/context_decl.hpp minigpt/model/taps.hpp)
string(REGEX MATCHALL "include/minigpt/[A-Za-z0-9_/.]+" reached "${deps}")
list(REMOVE_DUPLICATES reached)
list(LENGTH reached n)
if(n LESS 5)
  message(FATAL_ERROR "found too few minigpt headers in the dependency list:\n${deps}")
endif()
foreach(h IN LISTS reached)
  string(REPLACE "include/" "" h "${h}")
  if(NOT h IN_LIST allowed)
    message(FATAL_ERROR "the separately compiled README example reaches ${h}; the light headers must not include it")
  endif()
endforeach()
string(FIND "${deps}" "xsimd" at)
if(NOT at EQUAL -1)
  message(FATAL_ERROR "the separately compiled README example reaches xsimd")
endif()
message(STATUS "separate compilation: ${n} light headers, nothing else of minigpt")
