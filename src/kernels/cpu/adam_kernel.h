// CPU kernel of bnlab::optim::Adam's and AdamW's fused step (compiled per CPU capability).
#pragma once

#include "kernels/cpu/dispatch.h"

#include <cstdint>

namespace bnlab::kernels::cpu {

/// One contiguous CPU parameter of an Adam step (float or double; all arrays of one dtype).
struct AdamJob {
  void* param = nullptr;
  const void* grad = nullptr;
  void* exp_avg = nullptr;
  void* exp_avg_sq = nullptr;
  void* max_exp_avg_sq = nullptr;  ///< AMSGrad only, else nullptr
  int64_t numel = 0;
  bool is_double = false;
  /// Scalars of this parameter's step, computed in double as torch::optim does.
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0;
  double weight_decay = 0;          ///< Adam: added to the gradient (λθ)
  double decoupled_decay = 1;       ///< AdamW: θ is first scaled by 1 − η·λ (1: none)
  double sqrt_bias_correction2 = 1;  ///< √(1 − β₂ᵗ)
  double step_size = 0;              ///< η / (1 − β₁ᵗ)
  double* stats = nullptr;  ///< when set: the step's optim::update_stat row, filled in the same pass
};

using AdamStepFn = void (*)(const AdamJob& job);

extern KernelStub<AdamStepFn> adam_step_stub;

}  // namespace bnlab::kernels::cpu
