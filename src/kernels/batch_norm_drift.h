// How far one BatchNorm's batch statistics are from its running ones, per
// channel and averaged: the one definition both the CPU forward's drift row
// (kernels::batch_norm_drift_stats) and the recorder's writer use.
#pragma once

#include <cmath>
#include <cstdint>

namespace bnlab::kernels {

/// Channel averages of the four statistics and the two drifts. A quantity
/// whose inputs are missing is NaN.
struct DriftSummary {
  double batch_mean, batch_var, running_mean, running_var;
  double mean_drift;  ///< mean over c of |μ_B − μ_run| / sqrt(σ²_run + ε)
  double var_drift;   ///< mean over c of |ln(σ²_B / σ²_run)|
};

/// From C values of each statistic, read through `View`s (anything with
/// operator[](int64_t) → double). A missing pair (eval, or no running
/// statistics) is either flagged false here or given as NaN values, which
/// propagate to the same NaN results.
template <typename View>
DriftSummary summarize_drift(const View& batch_mean, const View& batch_var, const View& running_mean,
                             const View& running_var, bool have_batch, bool have_running, int64_t channels,
                             double eps) {
  const double nan = std::nan("");
  double bm = 0, bv = 0, rm = 0, rv = 0, mean_drift = 0, var_drift = 0;
  if (have_batch) {
    for (int64_t c = 0; c < channels; ++c) {
      bm += batch_mean[c];
      bv += batch_var[c];
    }
  }
  if (have_running) {
    for (int64_t c = 0; c < channels; ++c) {
      rm += running_mean[c];
      rv += running_var[c];
    }
  }
  const bool both = have_batch && have_running;
  if (both) {
    for (int64_t c = 0; c < channels; ++c) {
      mean_drift += std::abs(batch_mean[c] - running_mean[c]) / std::sqrt(running_var[c] + eps);
      var_drift += std::abs(std::log(batch_var[c] / running_var[c]));
    }
  }
  const double inv = channels > 0 ? 1.0 / static_cast<double>(channels) : nan;
  return {have_batch ? bm * inv : nan,         have_batch ? bv * inv : nan, have_running ? rm * inv : nan,
          have_running ? rv * inv : nan,       both ? mean_drift * inv : nan, both ? var_drift * inv : nan};
}

}  // namespace bnlab::kernels
