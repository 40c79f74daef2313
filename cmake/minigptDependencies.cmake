# Finds xsimd, working around Debian 12's libxsimd-dev, whose exported target lists a
# library "xtl" in INTERFACE_LINK_LIBRARIES without depending on the xtl package. xsimd
# only needs xtl for XSIMD_ENABLE_XTL_COMPLEX, which minigpt never uses, so when no xtl
# target exists we define an empty one to stop the linker looking for -lxtl.
# Used by minigpt's own CMakeLists.txt and by the installed minigptConfig.cmake.
if(NOT TARGET xtl)
  find_package(xtl QUIET CONFIG)
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED)
  endif()
endif()
