// bnlab::autograd::BatchNormFunction: batch normalization with a hand-written
// forward and backward (no at::batch_norm, no at::native_batch_norm).
#pragma once

#include <bnlab/nn/probe.h>

#include <torch/autograd.h>
#include <torch/types.h>

#include <c10/util/Optional.h>

namespace bnlab::autograd {

/// Batch normalization over dimension 1 of an input of shape (N, C, *).
///
/// Forward, for each channel c over its M = N·∏(spatial) values x_i:
///
///     training:  μ = (1/M)·Σ x_i,  σ² = (1/M)·Σ (x_i − μ)²          (biased variance)
///                running_mean ← (1 − m)·running_mean + m·μ
///                running_var  ← (1 − m)·running_var  + m·σ²·M/(M − 1)  (unbiased)
///     eval:      μ = running_mean,  σ² = running_var
///
///     r = 1/√(σ² + ε),  x̂_i = (x_i − μ)·r,  y_i = γ·x̂_i + β
///
/// Backward, with g_i = ∂L/∂y_i (γ = 1 when there is no weight):
///
///     ∂L/∂β   = Σ g_i
///     ∂L/∂γ   = Σ g_i·x̂_i
///     training: ∂L/∂x_i = γ·r·(g_i − (1/M)·Σ_j g_j − x̂_i·(1/M)·Σ_j g_j·x̂_j)
///     eval:     ∂L/∂x_i = γ·r·g_i        (μ and r are constants)
///
/// Double backward: when the backward runs with grad mode on (`create_graph`),
/// it recomputes μ and r from the saved input with differentiable tensor ops
/// and evaluates the same formulas, so autograd differentiates through the
/// statistics. Reusing the forward's saved r there would treat it as a
/// constant and give silently wrong second derivatives.
///
/// Arguments (shapes for an input (N, C, *)):
///  - `input`: (N, C, *), floating point, any layout;
///  - `weight`, `bias`: (C) or nullopt;
///  - `running_mean`, `running_var`: (C) or nullopt; updated in place when
///    `training` and defined; required when `training` is false;
///  - `momentum`: m above (the caller resolves a cumulative average to 1/n);
///  - `eps`: ε above;
///  - `probe`: a recorder's probe or nullptr; when given, the forward fills its
///    nn::batch_norm_stat row (batch statistics against the running ones
///    before the update, Σ y², non-finite outputs) and the backward adds the
///    gradient slots.
/// Returns y, shaped and laid out like `input`.
struct BatchNormFunction : public torch::autograd::Function<BatchNormFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx,
                               const torch::Tensor& input,
                               const c10::optional<torch::Tensor>& weight,
                               const c10::optional<torch::Tensor>& bias,
                               const c10::optional<torch::Tensor>& running_mean,
                               const c10::optional<torch::Tensor>& running_var,
                               bool training, double momentum, double eps,
                               const nn::LayerProbe* probe = nullptr);

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs);
};

}  // namespace bnlab::autograd
