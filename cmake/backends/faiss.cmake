# Backend "faiss": the FAISS-backed kNN index (include/minigpt/knn/faiss_index.hpp).
# Sets MINIGPT_BACKEND_LIBS to what a program using it links, or leaves it empty when libfaiss is absent.
set(MINIGPT_BACKEND_LIBS "")
# FAISS's exported target refers to OpenMP::OpenMP_CXX.
find_package(OpenMP QUIET COMPONENTS CXX)
if(TARGET OpenMP::OpenMP_CXX)
  find_package(faiss CONFIG QUIET)
endif()
if(TARGET faiss)
  set(MINIGPT_BACKEND_LIBS faiss)
endif()
