// A configurable multi-layer perceptron built from bnlab layers.
#pragma once

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>

namespace bnlab::models {

/// Options of `make_mlp`.
struct MlpOptions {
  MlpOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  /// Input dimension.
  TORCH_ARG(int64_t, in_features);
  /// Output dimension (number of classes).
  TORCH_ARG(int64_t, out_features);
  /// Number of hidden layers.
  TORCH_ARG(int64_t, depth) = 4;
  /// Width of every hidden layer.
  TORCH_ARG(int64_t, width) = 128;
  /// Insert a bnlab::nn::BatchNorm1d after every hidden Linear.
  TORCH_ARG(bool, batch_norm) = true;
};

/// [Linear → (BatchNorm1d) → Tanh] × depth → Linear, as a torch::nn::Sequential
/// (children named "0", "1", ...). Hidden Linears have no bias when followed by
/// BatchNorm (its β makes a bias redundant).
torch::nn::Sequential make_mlp(const MlpOptions& options);

}  // namespace bnlab::models
