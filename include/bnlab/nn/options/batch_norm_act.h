// Options of bnlab::nn::BatchNormAct.
#pragma once

#include <bnlab/nn/make_activation.h>
#include <bnlab/nn/options/batch_norm.h>

#include <c10/util/Optional.h>
#include <torch/arg.h>

#include <cstdint>
#include <string>

namespace bnlab::nn {

/// Options for `bnlab::nn::BatchNormAct`: BatchNorm's fields (same defaults
/// and meaning as BatchNormOptions) plus the activation, by name and options
/// as make_activation() takes them.
///
/// Example:
/// ```
/// bnlab::nn::BatchNormAct bn_tanh(bnlab::nn::BatchNormActOptions(128).activation("tanh"));
/// ```
struct BatchNormActOptions {
  /* implicit */ BatchNormActOptions(int64_t num_features) : num_features_(num_features) {}

  /// The BatchNorm part of these options.
  BatchNormOptions batch_norm() const;

  /// The number of features (channels) C of an input of shape (N, C, ...).
  TORCH_ARG(int64_t, num_features);
  /// Added to the variance inside the square root.
  TORCH_ARG(double, eps) = 1e-5;
  /// Weight of the batch in the running update; nullopt: cumulative average.
  TORCH_ARG(c10::optional<double>, momentum) = 0.1;
  /// Whether there is a learnable per-channel scale (`weight`) and shift (`bias`).
  TORCH_ARG(bool, affine) = true;
  /// Whether running estimates of mean and variance are kept (for eval mode).
  TORCH_ARG(bool, track_running_stats) = true;
  /// The activation applied to the normalized values: any name of
  /// activation_names() ("tanh", "relu", ...). Elementwise ones are fused
  /// into the BatchNorm kernels; "maxout" runs as BatchNorm then Maxout.
  TORCH_ARG(std::string, activation) = "tanh";
  /// The activation's options (saturation threshold, slope, alpha, ...).
  TORCH_ARG(ActivationOptions, activation_options) = {};
};

inline BatchNormOptions BatchNormActOptions::batch_norm() const {
  return BatchNormOptions(num_features())
      .eps(eps())
      .momentum(momentum())
      .affine(affine())
      .track_running_stats(track_running_stats());
}

}  // namespace bnlab::nn
