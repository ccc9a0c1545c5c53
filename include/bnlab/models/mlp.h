// A configurable multi-layer perceptron built from bnlab layers.
#pragma once

#include <bnlab/nn/make_activation.h>

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <string>

namespace bnlab::models {

/// Where BatchNorm goes in each hidden block.
enum class BatchNormPlacement {
  kNone,    ///< Linear → activation
  kBefore,  ///< Linear → BatchNorm → activation (the BatchNorm paper's placement)
  kAfter,   ///< Linear → activation → BatchNorm
};
BatchNormPlacement batch_norm_placement_from_string(const std::string& name);  // "none", "before", "after"
const char* to_string(BatchNormPlacement placement);

/// How hidden Linear weights are initialized (biases start at 0 except with kDefault).
enum class InitScheme {
  kDefault,     ///< PyTorch's default (Kaiming-uniform with a = √5)
  kKaiming,     ///< N(0, gain²/fan_in), gain from the activation (5/3 for tanh, √2 for ReLU, ...)
  kNaive,       ///< N(0, 1): unit variance regardless of fan-in (the classic bad scale)
  kCustomGain,  ///< N(0, gain²/fan_in) with the given gain
};
InitScheme init_scheme_from_string(const std::string& name);  // "default", "kaiming", "naive", "gain"
const char* to_string(InitScheme scheme);

/// The recommended Kaiming gain for an activation (PyTorch's calculate_gain):
/// tanh 5/3, relu √2, leaky_relu √(2/(1+slope²)), selu 3/4, others 1.
double recommended_gain(const std::string& activation, const nn::ActivationOptions& options);

/// Options of `make_mlp`.
struct MlpOptions {
  MlpOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  /// Input dimension (for token inputs: the context length).
  TORCH_ARG(int64_t, in_features);
  /// Output dimension (number of classes).
  TORCH_ARG(int64_t, out_features);
  /// Number of hidden blocks.
  TORCH_ARG(int64_t, depth) = 4;
  /// Width of every hidden block's output.
  TORCH_ARG(int64_t, width) = 128;
  /// Activation, by bnlab::nn::make_activation name, and its options.
  TORCH_ARG(std::string, activation) = "tanh";
  TORCH_ARG(nn::ActivationOptions, activation_options) = {};
  TORCH_ARG(BatchNormPlacement, batch_norm) = BatchNormPlacement::kBefore;
  TORCH_ARG(InitScheme, init) = InitScheme::kDefault;
  /// Gain for InitScheme::kCustomGain.
  TORCH_ARG(double, gain) = 1.0;
  /// Token inputs: vocabulary size (> 0 adds Embedding(vocab, embedding_dim) → Flatten first).
  TORCH_ARG(int64_t, vocab_size) = 0;
  TORCH_ARG(int64_t, embedding_dim) = 10;
  /// With BatchNorm before the activation: one fused nn::BatchNormAct per
  /// block in place of BatchNorm1d → activation. The same function and
  /// parameters (in the same order), one pass over the data each way instead of
  /// two; its recorder row carries both the activation's and BatchNorm's metrics.
  TORCH_ARG(bool, fuse_batch_norm) = false;
};

/// [Linear → (BatchNorm1d) → activation] × depth → Linear, as a
/// torch::nn::Sequential (children named "0", "1", ...), optionally behind an
/// Embedding → Flatten. Maxout blocks widen their Linear to width·pieces. A
/// hidden Linear directly followed by BatchNorm has no bias (β replaces it).
/// The init scheme applies to the hidden Linears; the output Linear keeps
/// PyTorch's default. With fuse_batch_norm, a block is Linear → BatchNormAct.
torch::nn::Sequential make_mlp(const MlpOptions& options);

}  // namespace bnlab::models
