// Fused reductions for the recorder: parameter statistics and gradient norms
// in one pass each, with CPU kernels and composite fallbacks.
#pragma once

#include "bnlab/optim/update_statistics.h"

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace bnlab::kernels {

/// Slots of one parameter's statistics row, filled by parameter_stats() and
/// by the fused optimizers (the public layout of bnlab::optim).
namespace param_stat = ::bnlab::optim::update_stat;

/// Fills `row` (float64, param_stat::kCount slots, on any device) for `param`,
/// its `grad` (may be undefined: the grad slots become 0) and the `snapshot`
/// of the parameter at the previous call, then copies θ into `snapshot` — one
/// pass over θ, g and the snapshot.
void parameter_stats(const torch::Tensor& param, const torch::Tensor& grad,
                     const torch::Tensor& snapshot, const torch::Tensor& row);

/// One parameter for parameter_stats_many().
struct ParameterStatsRequest {
  torch::Tensor param;
  torch::Tensor grad;      ///< may be undefined
  torch::Tensor snapshot;  ///< θ at the previous call; updated to θ
  torch::Tensor row;       ///< param_stat::kCount float64 slots
};

/// parameter_stats() for many parameters at once: on CPU one kernel call for
/// all of them (the per-call overhead matters: this runs on every step).
void parameter_stats_many(const std::vector<ParameterStatsRequest>& requests);

/// row[sum_slot] = Σ t², row[nonfinite_slot] = number of NaN/Inf in t, in one pass.
void sum_squares_and_nonfinite(const torch::Tensor& t, const torch::Tensor& row, int64_t sum_slot,
                               int64_t nonfinite_slot);

}  // namespace bnlab::kernels
