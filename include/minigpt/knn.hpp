// Umbrella header for kNN-LM: the datastore, exact / IVF / (optional) FAISS search,
// interpolation with the language model, and datastore building and scoring.
#pragma once

#include "minigpt/knn/builder.hpp"
#include "minigpt/knn/datastore.hpp"
#include "minigpt/kernels/distance.hpp"
#include "minigpt/knn/exact.hpp"
#include "minigpt/knn/faiss_index.hpp"
#include "minigpt/knn/index.hpp"
#include "minigpt/knn/ivf.hpp"
#include "minigpt/knn/kmeans.hpp"
#include "minigpt/knn/knn_lm.hpp"
