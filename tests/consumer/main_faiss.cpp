// A consumer that opted into the FAISS backend (COMPONENTS faiss): minigpt::faiss brings libfaiss
// and MINIGPT_HAVE_FAISS, so the FAISS index is declared.
#include <minigpt/knn/faiss_index.hpp>

#include <cstdio>

#if !defined(MINIGPT_HAVE_FAISS)
#error "minigpt::faiss must define MINIGPT_HAVE_FAISS"
#endif

int main() {
    std::printf("consumer_faiss: FAISS backend available\n");
    return 0;
}
