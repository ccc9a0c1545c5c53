// Internal building blocks of the fused BatchNorm + activation
// (autograd::BatchNormActFunction): the fused CPU kernels for float32/float64
// CPU inputs, composite ATen ops (BatchNorm, then the activation) elsewhere.
//
// Notation: z = (x − μ)·γr + β, the BatchNorm output; y = f(z); g = ∂L/∂y.
#pragma once

#include "bnlab/autograd/activation.h"

#include <torch/types.h>

#include <tuple>

namespace bnlab::kernels {

struct BatchNormActForward {
  torch::Tensor output;  ///< y
  torch::Tensor mean;    ///< μ used (batch or running), in stats_dtype
  torch::Tensor invstd;  ///< r used
};

/// y = f(BatchNorm(x)). In training, normalizes with the batch statistics and
/// updates the running ones (when defined) with `momentum`; in eval, uses the
/// running ones. `stats` (an nn::activation_stat row) receives the
/// activation's forward statistics with z as its input and the channels as
/// its units; `sample` (float32) receives z at the positions sample_plan keeps;
/// `channel_stats` (4·C float64) the BatchNorm part's per-channel batch and
/// running statistics (see batch_norm_channel_stats).
BatchNormActForward batch_norm_act_forward(const torch::Tensor& input, const torch::Tensor& weight,
                                           const torch::Tensor& bias, const torch::Tensor& running_mean,
                                           const torch::Tensor& running_var, bool training, double momentum,
                                           double eps, const autograd::ActivationParams& params,
                                           const torch::Tensor& stats, const torch::Tensor& sample,
                                           const torch::Tensor& channel_stats);

/// (∂L/∂x or undefined, ∂L/∂γ, ∂L/∂β) given g, the saved x and y and the
/// statistics the forward used; fills the gradient slots of `stats`
/// (Σ g², Σ (∂L/∂z)², non-finite ∂L/∂z) when defined.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> batch_norm_act_backward(
    const torch::Tensor& grad_output, const torch::Tensor& input, const torch::Tensor& output,
    const torch::Tensor& mean, const torch::Tensor& invstd, const torch::Tensor& weight, const torch::Tensor& bias,
    const autograd::ActivationParams& params, bool training, bool need_input, const torch::Tensor& stats);

}  // namespace bnlab::kernels
