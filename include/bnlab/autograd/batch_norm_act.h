// bnlab::autograd::BatchNormActFunction: BatchNorm followed by an elementwise
// activation, fused — one pass over the data forward (after the statistics)
// and a backward that never materializes the BatchNorm output.
#pragma once

#include <bnlab/autograd/activation.h>
#include <bnlab/nn/probe.h>

#include <torch/autograd.h>
#include <torch/types.h>

#include <c10/util/Optional.h>

namespace bnlab::autograd {

/// y = f(z), z = (x − μ)·γr + β with r = 1/√(σ² + ε): batch statistics μ, σ²
/// (biased) in training, which also updates the running ones
/// (running = (1 − m)·running + m·batch, the variance unbiased); the running
/// statistics in eval. The same arguments and semantics as
/// BatchNormFunction, plus the activation.
///
/// Backward, with dz = g·f′(z) (f′ read from y for Tanh, Sigmoid, ReLU and
/// ELU, from z recomputed from x otherwise) and M values per channel:
///   ∂L/∂β = Σ dz,  ∂L/∂γ = Σ dz·x̂,
///   ∂L/∂x = γr·(dz − Σdz/M − x̂·Σ(dz·x̂)/M)   (training),  γr·dz  (eval).
/// With create_graph, the backward is built from differentiable tensor ops
/// (statistics recomputed from x, in float64), so second derivatives are exact.
///
/// `probe` (a recorder's), when given, receives the activation's statistics
/// (nn::activation_stat) with z as the activation input and the channels as
/// units; its sample receives z.
struct BatchNormActFunction : public torch::autograd::Function<BatchNormActFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const c10::optional<torch::Tensor>& weight, const c10::optional<torch::Tensor>& bias,
                               const c10::optional<torch::Tensor>& running_mean,
                               const c10::optional<torch::Tensor>& running_var, bool training, double momentum,
                               double eps, const ActivationParams& params, const nn::LayerProbe* probe = nullptr);

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs);
};

}  // namespace bnlab::autograd
