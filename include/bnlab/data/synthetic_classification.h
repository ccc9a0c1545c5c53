// Built-in synthetic classification data: labels from a fixed random teacher network.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>

namespace bnlab::data {

/// Options of the built-in synthetic classification task.
struct SyntheticClassificationOptions {
  /// Input dimension.
  TORCH_ARG(int64_t, num_features) = 32;
  /// Number of classes.
  TORCH_ARG(int64_t, num_classes) = 10;
  /// Hidden width of the teacher network that labels the inputs.
  TORCH_ARG(int64_t, teacher_width) = 64;
  /// Number of training examples.
  TORCH_ARG(int64_t, train_size) = 8192;
  /// Number of validation examples.
  TORCH_ARG(int64_t, val_size) = 2048;
  /// Seed of the teacher and of the inputs; the same seed gives the same data.
  TORCH_ARG(uint64_t, seed) = 1234;
};

/// Inputs and integer class targets of one split.
struct Split {
  torch::Tensor inputs;   ///< (n, num_features) float32
  torch::Tensor targets;  ///< (n) int64 in [0, num_classes)
};

/// Gaussian inputs x ~ N(0, I) labelled by argmax of a fixed random teacher
/// `W2 · tanh(W1 · x)`: a nonlinear task that a deep student MLP can learn.
/// The data depends only on the options (its own generator), never on the
/// global RNG.
class SyntheticClassification {
 public:
  explicit SyntheticClassification(const SyntheticClassificationOptions& options = {});

  const Split& train() const { return train_; }
  const Split& val() const { return val_; }
  const SyntheticClassificationOptions& options() const { return options_; }

 private:
  SyntheticClassificationOptions options_;
  Split train_;
  Split val_;
};

}  // namespace bnlab::data
