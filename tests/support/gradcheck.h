// Finite-difference gradient checks (the C++ counterpart of
// torch.autograd.gradcheck / gradgradcheck).
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>

namespace bnlab_test {

struct GradcheckOptions {
  double eps = 1e-6;   ///< central-difference step
  double atol = 1e-5;  ///< PyTorch's gradcheck defaults
  double rtol = 1e-3;
};

/// A function of tensors to tensors; it must be pure (same inputs, same outputs).
using DifferentiableFn =
    std::function<torch::autograd::variable_list(const torch::autograd::variable_list&)>;

/// Compares, for every float64 input with requires_grad and every output, the
/// analytical Jacobian (from autograd, one vector-Jacobian product per output
/// element) with the central difference (f(x + eps·e_k) − f(x − eps·e_k)) / (2·eps).
::testing::AssertionResult gradcheck(const DifferentiableFn& fn,
                                     const torch::autograd::variable_list& inputs,
                                     const GradcheckOptions& options = {});

/// gradcheck of the map (inputs, v) ↦ ∂<fn(inputs), v>/∂inputs built with
/// create_graph, for random v: checks second derivatives (double backward),
/// including those w.r.t. v.
::testing::AssertionResult gradgradcheck(const DifferentiableFn& fn,
                                         const torch::autograd::variable_list& inputs,
                                         const GradcheckOptions& options = {});

}  // namespace bnlab_test
