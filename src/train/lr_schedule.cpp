#include "bnlab/train/lr_schedule.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace bnlab::train {

LrScheduleKind lr_schedule_kind_from_string(const std::string& name) {
  if (name == "constant") return LrScheduleKind::kConstant;
  if (name == "step") return LrScheduleKind::kStepDecay;
  if (name == "cosine") return LrScheduleKind::kCosine;
  TORCH_CHECK(false, "bnlab: unknown learning-rate schedule \"", name,
              "\"; expected one of constant, step, cosine");
}

const char* to_string(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::kStepDecay: return "step";
    case LrScheduleKind::kCosine: return "cosine";
    default: return "constant";
  }
}

double learning_rate(const LrScheduleOptions& o, int64_t step) {
  double lr = o.base_lr();
  switch (o.kind()) {
    case LrScheduleKind::kConstant: break;
    case LrScheduleKind::kStepDecay:
      lr = o.base_lr() * std::pow(o.gamma(), static_cast<double>(step / std::max<int64_t>(1, o.step_size())));
      break;
    case LrScheduleKind::kCosine: {
      const double t = std::min(1.0, static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, o.total_steps())));
      lr = o.min_lr() + 0.5 * (o.base_lr() - o.min_lr()) * (1.0 + std::cos(M_PI * t));
      break;
    }
  }
  if (o.warmup_steps() > 0 && step < o.warmup_steps()) {
    lr *= static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps());
  }
  return lr;
}

}  // namespace bnlab::train
