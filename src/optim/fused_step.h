// What bnlab's fused optimizer steps share.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <initializer_list>

namespace bnlab::optim::detail {

/// Whether the fused CPU kernels can use `t` alongside the parameter `param`:
/// a dense, contiguous CPU tensor of the parameter's dtype (float or double)
/// and shape. Anything else takes torch's ops, which broadcast or raise on a
/// mismatched shape, where the kernels would run past the end of `t`.
inline bool fusable(const torch::Tensor& t, const torch::Tensor& param) {
  const auto dtype = param.scalar_type();
  return t.defined() && t.device().is_cpu() && t.layout() == torch::kStrided && t.scalar_type() == dtype &&
         (dtype == torch::kFloat || dtype == torch::kDouble) && t.is_contiguous() && t.sizes() == param.sizes();
}

/// Marks in-place writes through raw pointers as torch's in-place ops do, so
/// autograd still catches a tensor saved for a backward and changed since.
inline void bump_versions(std::initializer_list<const torch::Tensor*> tensors) {
  for (const auto* t : tensors) {
    if (t != nullptr && t->defined()) t->unsafeGetTensorImpl()->bump_version();
  }
}

/// The loss of an optimizer step's closure, evaluated with gradients enabled
/// (undefined without a closure), as torch::optim's steps do.
inline torch::Tensor evaluate_closure(const torch::optim::Optimizer::LossClosure& closure) {
  if (closure == nullptr) return {};
  at::AutoGradMode enable_grad(true);
  return closure();
}

}  // namespace bnlab::optim::detail
