// Learning-rate schedules.
#pragma once

#include <torch/arg.h>

#include <cstdint>
#include <string>

namespace bnlab::train {

enum class LrScheduleKind {
  kConstant,   ///< base_lr
  kStepDecay,  ///< base_lr · gamma^⌊step / step_size⌋
  kCosine,     ///< min_lr + ½(base_lr − min_lr)(1 + cos(π·step / total_steps))
};

/// "constant", "step" or "cosine" → the kind; throws listing the valid names otherwise.
LrScheduleKind lr_schedule_kind_from_string(const std::string& name);
const char* to_string(LrScheduleKind kind);

struct LrScheduleOptions {
  TORCH_ARG(LrScheduleKind, kind) = LrScheduleKind::kConstant;
  TORCH_ARG(double, base_lr) = 0.1;
  /// kStepDecay: decay every step_size steps by gamma.
  TORCH_ARG(int64_t, step_size) = 1000;
  TORCH_ARG(double, gamma) = 0.1;
  /// kCosine: the floor and the length of the decay.
  TORCH_ARG(double, min_lr) = 0.0;
  TORCH_ARG(int64_t, total_steps) = 1;
  /// Linear warm-up from 0 over the first warmup_steps steps (any kind).
  TORCH_ARG(int64_t, warmup_steps) = 0;
};

/// The learning rate of step `step` (0-based); a pure function of the step,
/// so a resumed run gets the same rates.
double learning_rate(const LrScheduleOptions& options, int64_t step);

}  // namespace bnlab::train
