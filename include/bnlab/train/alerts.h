// Warnings about training health, raised by the recorder from each step's metrics.
#pragma once

#include <bnlab/train/metrics.h>

#include <torch/arg.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace bnlab::train {

/// Thresholds of the alerts. A condition must hold for `patience` consecutive
/// steps before it is reported, and is reported again only after it has been
/// clear for `patience` consecutive steps (no flapping around a threshold).
struct AlertOptions {
  /// Saturation above this % (for `patience` steps) warns.
  TORCH_ARG(double, saturation_pct) = 25.0;
  /// Dead units above this % warn.
  TORCH_ARG(double, dead_pct) = 10.0;
  /// update:data outside [update_to_data_low, update_to_data_high] warns
  /// (around the 1e-3 rule of thumb).
  TORCH_ARG(double, update_to_data_low) = 1e-4;
  TORCH_ARG(double, update_to_data_high) = 1e-2;
  /// ‖∂L/∂x‖ at the first layer over that at the last: below this, gradients vanish ...
  TORCH_ARG(double, vanishing_ratio) = 1e-2;
  /// ... above this, they explode.
  TORCH_ARG(double, exploding_ratio) = 1e2;
  /// Consecutive steps a condition must hold.
  TORCH_ARG(int64_t, patience) = 10;
  /// Log alerts with spdlog (they are returned either way).
  TORCH_ARG(bool, log) = true;
};

/// One raised alert.
struct Alert {
  int64_t step = 0;
  std::string kind;   ///< "saturation", "dead", "update_to_data", "vanishing", "exploding", "nonfinite"
  std::string layer;  ///< the layer concerned ("" for whole-model alerts)
  std::string message;
};

/// Watches StepMetrics and raises alerts. Not thread-safe; the recorder calls
/// it from one thread.
class AlertMonitor {
 public:
  explicit AlertMonitor(AlertOptions options = {});
  /// The alerts this step raises (also logged as spdlog warnings when enabled).
  std::vector<Alert> observe(const StepMetrics& step);

 private:
  bool sustained(const std::string& key, bool condition);
  AlertOptions options_;
  std::map<std::string, int64_t> streak_;       // consecutive steps a condition held
  std::map<std::string, int64_t> clear_streak_; // consecutive steps it did not, since reported
  std::map<std::string, bool> reported_;        // reported in the current episode
};

}  // namespace bnlab::train
