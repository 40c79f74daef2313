// Umbrella header for kNN-LM: the datastore, exact / IVF / (optional) FAISS search,
// interpolation with the language model, datastore building and scoring, adaptive retrieval,
// PCA-reduced keys and the generation-time sampler stage.
#pragma once

#include "minigpt/knn/adaptive.hpp"
#include "minigpt/knn/builder.hpp"
#include "minigpt/knn/datastore.hpp"
#include "minigpt/kernels/distance.hpp"
#include "minigpt/knn/exact.hpp"
#include "minigpt/knn/faiss_index.hpp"
#include "minigpt/knn/index.hpp"
#include "minigpt/knn/ivf.hpp"
#include "minigpt/knn/kmeans.hpp"
#include "minigpt/knn/knn_lm.hpp"
#include "minigpt/knn/pca.hpp"
#include "minigpt/knn/sampler_stage.hpp"
