# minigpt_add_library(<name>): minigpt compiled once for a program, instead of in every translation
# unit that includes it (include/minigpt/core/api.hpp). Creates a static library <name>, built in the
# consumer's own tree with the consumer's compiler and flags from a one-line source that includes
# <minigpt/src.hpp>; it carries MINIGPT_SEPARATE_COMPILATION to everything that links it. Link it
# instead of minigpt::minigpt, from every target of the program that includes minigpt.
function(minigpt_add_library name)
  set(src ${CMAKE_CURRENT_BINARY_DIR}/${name}_minigpt_src.cpp)
  file(CONFIGURE OUTPUT ${src} CONTENT "// Written by minigpt_add_library: minigpt's compiled-once functions.\n#include <minigpt/src.hpp>\n")
  add_library(${name} STATIC ${src})
  target_link_libraries(${name} PUBLIC minigpt::minigpt)
  target_compile_definitions(${name} PUBLIC MINIGPT_SEPARATE_COMPILATION)
endfunction()
