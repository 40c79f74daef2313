# Optional FAISS backend for the kNN-LM index (include/minigpt/knn/faiss_index.hpp).
# When MINIGPT_FAISS is ON and libfaiss is found (Debian: libfaiss-dev, which ships
# faiss-config.cmake), the minigpt INTERFACE target links it and defines MINIGPT_HAVE_FAISS.
# Nothing is required: without FAISS the library, its tests and tools build as before.
#
# Include it after add_library(minigpt ...). Included earlier (e.g. through
# CMAKE_PROJECT_INCLUDE), it defers itself to the end of the top-level directory.
if(NOT DEFINED MINIGPT_FAISS)
  set(MINIGPT_FAISS ON)
endif()

function(_minigpt_enable_faiss)
  if(NOT MINIGPT_FAISS OR NOT TARGET minigpt)
    return()
  endif()
  # FAISS's exported target refers to OpenMP::OpenMP_CXX; make sure it exists even when
  # minigpt itself is built without OpenMP.
  find_package(OpenMP QUIET COMPONENTS CXX)
  if(NOT TARGET OpenMP::OpenMP_CXX)
    message(STATUS "minigpt: FAISS backend off (FAISS needs OpenMP, which was not found)")
    return()
  endif()
  find_package(faiss CONFIG QUIET)
  if(TARGET faiss)
    target_link_libraries(minigpt INTERFACE faiss)
    target_compile_definitions(minigpt INTERFACE MINIGPT_HAVE_FAISS)
    message(STATUS "minigpt: FAISS backend on (${faiss_DIR})")
    return()
  endif()
  # No CMake package: look for the header and library directly (BLAS comes with them).
  find_path(MINIGPT_FAISS_INCLUDE_DIR faiss/IndexIVFFlat.h)
  find_library(MINIGPT_FAISS_LIBRARY faiss)
  find_package(BLAS QUIET)
  find_package(LAPACK QUIET)
  if(MINIGPT_FAISS_INCLUDE_DIR AND MINIGPT_FAISS_LIBRARY AND BLAS_FOUND AND LAPACK_FOUND)
    target_include_directories(minigpt SYSTEM INTERFACE ${MINIGPT_FAISS_INCLUDE_DIR})
    target_link_libraries(minigpt INTERFACE ${MINIGPT_FAISS_LIBRARY} OpenMP::OpenMP_CXX ${LAPACK_LIBRARIES} ${BLAS_LIBRARIES})
    target_compile_definitions(minigpt INTERFACE MINIGPT_HAVE_FAISS)
    message(STATUS "minigpt: FAISS backend on (${MINIGPT_FAISS_LIBRARY})")
  else()
    message(STATUS "minigpt: FAISS backend off (libfaiss not found)")
  endif()
endfunction()

if(TARGET minigpt)
  _minigpt_enable_faiss()
else()
  cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _minigpt_enable_faiss)
endif()
