// Options of bnlab's BatchNorm modules and of bnlab::functional::batch_norm.
#pragma once

#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>

namespace bnlab::nn {

/// Options for `bnlab::nn::BatchNorm{1,2,3}d`: the same fields, defaults and
/// meaning as `torch::nn::BatchNormOptions`, so code written for one compiles
/// against the other.
///
/// Example:
/// ```
/// bnlab::nn::BatchNorm2d bn(bnlab::nn::BatchNorm2dOptions(64).momentum(0.01));
/// ```
struct BatchNormOptions {
  /* implicit */ BatchNormOptions(int64_t num_features) : num_features_(num_features) {}

  /// The number of features (channels) C of an input of shape (N, C, ...).
  TORCH_ARG(int64_t, num_features);

  /// Added to the variance inside the square root, for numerical stability.
  TORCH_ARG(double, eps) = 1e-5;

  /// Weight m of the newest batch in `running = (1 - m) * running + m * batch`.
  /// `c10::nullopt` gives the cumulative average: m = 1 / num_batches_tracked.
  TORCH_ARG(c10::optional<double>, momentum) = 0.1;

  /// Whether the module has a learnable per-channel scale (`weight`) and shift (`bias`).
  TORCH_ARG(bool, affine) = true;

  /// Whether the module keeps running estimates of mean and variance (used in
  /// eval mode). Without them, batch statistics are used in eval mode too.
  TORCH_ARG(bool, track_running_stats) = true;
};

using BatchNorm1dOptions = BatchNormOptions;
using BatchNorm2dOptions = BatchNormOptions;
using BatchNorm3dOptions = BatchNormOptions;

}  // namespace bnlab::nn

namespace bnlab::functional {

/// Options for `bnlab::functional::batch_norm(input, running_mean, running_var, options)`;
/// the counterpart of `torch::nn::functional::BatchNormFuncOptions`.
struct BatchNormFuncOptions {
  /// Per-channel scale γ, or undefined for none.
  TORCH_ARG(torch::Tensor, weight) = {};
  /// Per-channel shift β, or undefined for none.
  TORCH_ARG(torch::Tensor, bias) = {};
  /// Normalize with batch statistics (and update the running ones) when true.
  TORCH_ARG(bool, training) = false;
  /// Weight of the batch statistics in the running update.
  TORCH_ARG(c10::optional<double>, momentum) = 0.1;
  /// Added to the variance inside the square root.
  TORCH_ARG(double, eps) = 1e-5;
};

}  // namespace bnlab::functional
