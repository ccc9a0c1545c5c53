// bnlab::functional::batch_norm_act: the stateless fused BatchNorm + activation.
#pragma once

#include <bnlab/autograd/activation.h>

#include <torch/types.h>

#include <c10/util/Optional.h>

namespace bnlab::functional {

/// f(batch_norm(input, ...)) in one fused op
/// (`bnlab::autograd::BatchNormActFunction`): the arguments of
/// bnlab::functional::batch_norm, then the elementwise activation's parameters.
/// Equal to `f(batch_norm(...))` computed in two steps.
torch::Tensor batch_norm_act(const torch::Tensor& input, const torch::Tensor& running_mean,
                             const torch::Tensor& running_var, const torch::Tensor& weight, const torch::Tensor& bias,
                             bool training, c10::optional<double> momentum, double eps,
                             const autograd::ActivationParams& activation);

}  // namespace bnlab::functional
