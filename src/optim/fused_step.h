// What bnlab's fused optimizer steps share.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/types.h>

namespace bnlab::optim::detail {

/// Whether the fused CPU kernels can update `t` in place: a dense, contiguous
/// CPU tensor of `dtype` (float or double; anything else takes torch's ops).
inline bool fusable(const torch::Tensor& t, torch::ScalarType dtype) {
  return t.defined() && t.device().is_cpu() && t.layout() == torch::kStrided && t.scalar_type() == dtype && t.is_contiguous() &&
         (dtype == torch::kFloat || dtype == torch::kDouble);
}

/// The loss of an optimizer step's closure, evaluated with gradients enabled
/// (undefined without a closure), as torch::optim's steps do.
inline torch::Tensor evaluate_closure(const torch::optim::Optimizer::LossClosure& closure) {
  if (closure == nullptr) return {};
  at::AutoGradMode enable_grad(true);
  return closure();
}

}  // namespace bnlab::optim::detail
