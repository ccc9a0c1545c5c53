#include "bnlab/autograd/batch_norm_act.h"

#include "autograd/activation_internal.h"
#include "autograd/batch_norm_internal.h"
#include "kernels/activation.h"
#include "kernels/batch_norm.h"
#include "kernels/batch_norm_act.h"

#include <ATen/ATen.h>

namespace bnlab::autograd {

namespace {

using torch::Tensor;

constexpr const char* kOp = "bnlab::batch_norm_act";
using detail::kHasBias;
using detail::kHasWeight;
using detail::kTraining;

// create_graph backward from differentiable ops (in float64; see the header).
std::tuple<Tensor, Tensor, Tensor> differentiable_backward(const Tensor& grad_out, const Tensor& input,
                                                           const Tensor& weight, const Tensor& bias,
                                                           const Tensor& mean, const Tensor& invstd, bool training,
                                                           double eps, const ActivationParams& params) {
  const auto dtype = input.scalar_type();
  const int64_t dim = input.dim();
  const auto dims = kernels::reduction_dims(dim);
  const Tensor x = input.to(torch::kDouble);
  const Tensor w = weight.defined() ? kernels::as_channel_view(weight.to(torch::kDouble), dim) : Tensor();
  const Tensor b = bias.defined() ? kernels::as_channel_view(bias.to(torch::kDouble), dim) : Tensor();
  Tensor xhat;
  if (training) {
    const auto mu = x.mean(dims, /*keepdim=*/true);
    const auto centered = x - mu;
    xhat = centered * ((centered * centered).mean(dims, /*keepdim=*/true) + eps).rsqrt();
  } else {
    xhat = (x - kernels::as_channel_view(mean.to(torch::kDouble), dim)) *
           kernels::as_channel_view(invstd.to(torch::kDouble), dim);
  }
  Tensor z = w.defined() ? xhat * w : xhat;
  if (b.defined()) z = z + b;
  // Some derivatives read y (tanh: 1 − y²), others x: give both.
  const Tensor dz =
      grad_out.to(torch::kDouble) * kernels::activation_derivative(z, kernels::activation_composite(z, params), params);
  if (training) return detail::differentiable_train_backward(dz, input, weight, eps);
  const Tensor r = kernels::as_channel_view(invstd.to(torch::kDouble), dim);
  const Tensor grad_input = dz * (w.defined() ? w * r : r);
  return {grad_input.to(dtype), (dz * xhat).sum(dims).to(dtype), dz.sum(dims).to(dtype)};
}

}  // namespace

Tensor BatchNormActFunction::forward(torch::autograd::AutogradContext* ctx, const Tensor& input,
                                     const c10::optional<Tensor>& weight, const c10::optional<Tensor>& bias,
                                     const c10::optional<Tensor>& running_mean,
                                     const c10::optional<Tensor>& running_var, bool training, double momentum,
                                     double eps, const ActivationParams& params, const nn::LayerProbe* probe) {
  detail::check_batch_norm_arguments(kOp, input, weight, bias, running_mean, running_var, training);
  const Tensor stats = detail::activation_stats_row(probe, input, kOp);
  const bool recording = probe != nullptr && stats.defined();
  const Tensor w = detail::value_or_undefined(weight);
  const Tensor b = detail::value_or_undefined(bias);
  auto r = kernels::batch_norm_act_forward(input, w, b, detail::value_or_undefined(running_mean),
                                           detail::value_or_undefined(running_var), training, momentum, eps, params,
                                           stats, recording ? probe->sample : Tensor(),
                                           recording ? probe->channel_stats : Tensor());
  // y is saved too: the following layer keeps it alive anyway, and Tanh,
  // Sigmoid, ReLU and ELU read f′ from it.
  ctx->save_for_backward({input, w, b, r.mean, r.invstd, r.output});
  ctx->saved_data["stats"] = stats;
  ctx->saved_data["eps"] = eps;
  ctx->saved_data["flags"] = static_cast<int64_t>((training ? kTraining : 0) | (w.defined() ? kHasWeight : 0) |
                                                  (b.defined() ? kHasBias : 0));
  detail::save_activation_params(ctx, params);
  return r.output;
}

torch::autograd::variable_list BatchNormActFunction::backward(torch::autograd::AutogradContext* ctx,
                                                              torch::autograd::variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const Tensor& input = saved[0];
  const Tensor& weight = saved[1];
  const Tensor& bias = saved[2];
  const Tensor& mean = saved[3];
  const Tensor& invstd = saved[4];
  const Tensor& output = saved[5];
  const int64_t flags = ctx->saved_data["flags"].toInt();
  const bool training = (flags & kTraining) != 0;
  const bool has_weight = (flags & kHasWeight) != 0;
  const bool has_bias = (flags & kHasBias) != 0;
  const double eps = ctx->saved_data["eps"].toDouble();
  const ActivationParams params = detail::load_activation_params(ctx);
  const auto& stats_value = ctx->saved_data["stats"];
  const Tensor stats = stats_value.isTensor() ? stats_value.toTensor() : Tensor();

  // needs_input_grad counts only the tensor inputs that were given.
  const bool need_input = ctx->needs_input_grad(0);
  const bool need_weight = has_weight && ctx->needs_input_grad(1);
  const bool need_bias = has_bias && ctx->needs_input_grad(has_weight ? 2 : 1);

  Tensor grad_input, grad_weight, grad_bias;
  if (at::GradMode::is_enabled()) {
    std::tie(grad_input, grad_weight, grad_bias) =
        differentiable_backward(grad_outputs[0], input, weight, bias, mean, invstd, training, eps, params);
    if (stats.defined()) {
      // The activation's gradient slots, from tensors (this path is rare).
      torch::NoGradGuard no_grad;
      namespace slot = nn::activation_stat;
      const Tensor g = grad_outputs[0].detach().to(torch::kDouble);
      auto detached = [](const Tensor& t) { return t.defined() ? t.detach() : t; };
      const Tensor z = kernels::batch_norm_transform(input.detach(), mean, invstd, detached(weight), detached(bias));
      const Tensor zd = z.to(torch::kDouble);
      const Tensor dz = g * kernels::activation_derivative(zd, kernels::activation_composite(zd, params), params);
      stats.select(0, slot::kGradOutputSumSq).copy_((g * g).sum());
      stats.select(0, slot::kGradInputSumSq).copy_((dz * dz).sum());
      stats.select(0, slot::kNonFiniteGradInput).copy_(dz.isfinite().logical_not().sum());
    }
  } else {
    std::tie(grad_input, grad_weight, grad_bias) = kernels::batch_norm_act_backward(
        grad_outputs[0], input, output, mean, invstd, weight, bias, params, training, need_input, stats);
  }
  if (!need_input) grad_input = Tensor();
  if (!need_weight) grad_weight = Tensor();
  if (!need_bias) grad_bias = Tensor();
  return {grad_input, grad_weight, grad_bias, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
}

}  // namespace bnlab::autograd
