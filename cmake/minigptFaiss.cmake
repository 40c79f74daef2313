# Optional FAISS backend for the kNN-LM index (include/minigpt/knn/faiss_index.hpp).
# When MINIGPT_FAISS is ON and libfaiss is found (Debian: libfaiss-dev, which ships
# faiss-config.cmake), a second INTERFACE target minigpt::faiss is defined: minigpt::minigpt
# plus libfaiss plus MINIGPT_HAVE_FAISS. Programs that want the FAISS index link that target;
# everything else keeps linking nothing but minigpt::minigpt. Without FAISS nothing changes.
set(MINIGPT_HAVE_FAISS OFF)
if(MINIGPT_FAISS)
  # FAISS's exported target refers to OpenMP::OpenMP_CXX.
  find_package(OpenMP QUIET COMPONENTS CXX)
  if(TARGET OpenMP::OpenMP_CXX)
    find_package(faiss CONFIG QUIET)
  endif()
  if(TARGET faiss)
    add_library(minigpt_faiss INTERFACE)
    add_library(minigpt::faiss ALIAS minigpt_faiss)
    set_target_properties(minigpt_faiss PROPERTIES EXPORT_NAME faiss)
    target_link_libraries(minigpt_faiss INTERFACE minigpt faiss)
    target_compile_definitions(minigpt_faiss INTERFACE MINIGPT_HAVE_FAISS)
    set(MINIGPT_HAVE_FAISS ON)
    message(STATUS "minigpt: FAISS backend on, target minigpt::faiss (${faiss_DIR})")
  else()
    message(STATUS "minigpt: FAISS backend off (libfaiss-dev not found)")
  endif()
endif()
