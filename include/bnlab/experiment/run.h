// One training run of bnlab-train: data, model, optimizer, recorder, trainer.
#pragma once

#include <bnlab/experiment/config.h>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace bnlab::experiment {

/// What a run's table row says (see README, "The study").
struct RunSummary {
  std::string name;
  std::string activation;
  std::string batch_norm;
  int64_t steps = 0;
  /// Mean training loss over the last 5% of steps (at least 10).
  double final_train_loss = 0;
  double final_val_loss = 0;
  double final_val_accuracy = 0;
  /// First step at which the training loss, smoothed by an exponential moving
  /// average (weight 0.05), reaches target_loss; -1 if never.
  int64_t steps_to_target = -1;
  /// Saturation % of the first and of the last hidden activation layer, mean over all steps.
  double saturation_first_pct = 0;
  double saturation_last_pct = 0;
  /// Dead % (units saturated on every example), mean over the hidden
  /// activation layers and over the last 10% of steps.
  double dead_pct = 0;
  /// ‖∂L/∂y‖ at the last hidden activation layer over that at the first,
  /// geometric mean over steps: ≫ 1 means gradients vanish towards the input.
  double grad_ratio_last_first = 0;
  double seconds = 0;  ///< wall time (not written to the deterministic files)
  bool diverged = false;
  bool interrupted = false;
};

/// The summary without its timing (for files that must be reproducible).
nlohmann::json to_json(const RunSummary& summary);

/// Trains as `config` says and writes into config.out: config.json, the
/// metrics sinks (CSV and JSON Lines without timings, so the same seed and
/// thread count give identical files; TensorBoard), summary.json,
/// timing.json and checkpoint.pt (when stopped, or every checkpoint_every
/// steps). With config.resume, continues from the checkpoint. `name` labels
/// the run in the summary (default: derived from the activation and BatchNorm).
RunSummary run_training(const RunConfig& config, const std::string& name = "");

/// "tanh", "tanh+bn" (BatchNorm before), "tanh+bn_after".
std::string run_name(const RunConfig& config);

}  // namespace bnlab::experiment
