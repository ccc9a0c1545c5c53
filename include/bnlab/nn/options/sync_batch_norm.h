// Options of bnlab::nn::SyncBatchNorm.
#pragma once

#include <bnlab/distributed/process_group.h>
#include <bnlab/nn/options/batch_norm.h>

#include <c10/util/Optional.h>
#include <torch/arg.h>

#include <cstdint>

namespace bnlab::nn {

/// BatchNorm's options plus the process group whose ranks share the
/// statistics (PyTorch's SyncBatchNorm(num_features, eps, momentum, affine,
/// track_running_stats, process_group)).
struct SyncBatchNormOptions {
  /* implicit */ SyncBatchNormOptions(int64_t num_features) : num_features_(num_features) {}
  /// C of an input (N, C, *).
  TORCH_ARG(int64_t, num_features);
  TORCH_ARG(double, eps) = 1e-5;
  /// Weight m of the newest batch in the running averages; nullopt: cumulative average.
  TORCH_ARG(c10::optional<double>, momentum) = 0.1;
  TORCH_ARG(bool, affine) = true;
  TORCH_ARG(bool, track_running_stats) = true;
  /// The ranks whose batches form the global batch; none (or a group of one
  /// rank) normalizes locally, exactly as BatchNorm.
  TORCH_ARG(distributed::ProcessGroupPtr, process_group) = {};


 public:
  /// The BatchNorm options (without the group).
  BatchNormOptions batch_norm_options() const {
    return BatchNormOptions(num_features_).eps(eps_).momentum(momentum_).affine(affine_).track_running_stats(
        track_running_stats_);
  }
};

}  // namespace bnlab::nn
