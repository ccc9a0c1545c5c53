// CPU kernel of bnlab::optim::SGD's fused step (compiled per CPU capability).
#pragma once

#include "kernels/cpu/dispatch.h"

#include <cstdint>

namespace bnlab::kernels::cpu {

/// One contiguous CPU parameter of an SGD step (float or double; all arrays of one dtype).
struct SgdJob {
  void* param = nullptr;
  const void* grad = nullptr;
  void* momentum_buffer = nullptr;  ///< nullptr without momentum
  int64_t numel = 0;
  bool is_double = false;
  bool first_step = false;  ///< the buffer is uninitialized: it becomes d (no momentum decay)
  double* stats = nullptr;  ///< when set: the step's optim::update_stat row, filled in the same pass
};

/// The hyper-parameters of a parameter group (torch::optim::SGDOptions).
struct SgdHyper {
  double lr = 0.0;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

/// Applies one SGD update to a parameter in one pass over it.
using SgdStepFn = void (*)(const SgdJob& job, const SgdHyper& hyper);

extern KernelStub<SgdStepFn> sgd_step_stub;

}  // namespace bnlab::kernels::cpu
