#include "bnlab/autograd/batch_norm.h"

#include "autograd/batch_norm_internal.h"
#include "kernels/batch_norm.h"
#include "kernels/reduce.h"

#include <ATen/ATen.h>

namespace bnlab::autograd {

namespace {

using torch::Tensor;

constexpr const char* kOp = "bnlab::batch_norm";
using detail::kHasBias;
using detail::kHasWeight;
using detail::kTraining;

}  // namespace

namespace detail {

// Checks one per-channel argument (weight, bias, running_mean, running_var).
void check_per_channel(const char* op, const c10::optional<Tensor>& t, const char* name, const Tensor& input) {
  if (!t.has_value() || !t->defined()) return;
  const int64_t channels = input.size(1);
  TORCH_CHECK(t->dim() == 1 && t->size(0) == channels, op, ": expected ", name,
              " of shape [", channels, "] (one value per channel of the input ", input.sizes(),
              "), got ", name, " of shape ", t->sizes());
  TORCH_CHECK(t->scalar_type() == input.scalar_type(), op, ": expected ", name,
              " of the input's dtype ", input.scalar_type(), ", got ", t->scalar_type());
  TORCH_CHECK(t->device() == input.device(), op, ": expected ", name,
              " on the input's device ", input.device(), ", got ", t->device());
}

Tensor value_or_undefined(const c10::optional<Tensor>& t) {
  return t.has_value() ? *t : Tensor();
}

bool is_defined(const c10::optional<Tensor>& t) { return t.has_value() && t->defined(); }

// The training-mode gradients as differentiable tensor ops of the saved input,
// used when the backward itself must be differentiated (create_graph). The
// statistics are recomputed from x so that autograd sees their dependence on it.
//
// Reduced-precision inputs are computed in float64 here: second derivatives of
// batch norm are ill-conditioned for small batches (at 2 values per channel,
// float32 evaluation is off by up to ~200x assert_close's float32 tolerance,
// PyTorch's included). The casts are differentiable ops, so the graph is intact.
std::tuple<Tensor, Tensor, Tensor> differentiable_train_backward(const Tensor& grad_out_in,
                                                                 const Tensor& input_in,
                                                                 const Tensor& weight_in,
                                                                 double eps) {
  const auto dtype = input_in.scalar_type();
  const Tensor input = input_in.to(torch::kDouble);
  const Tensor grad_out = grad_out_in.to(torch::kDouble);
  const Tensor weight = weight_in.defined() ? weight_in.to(torch::kDouble) : weight_in;
  const auto dims = kernels::reduction_dims(input.dim());
  const int64_t dim = input.dim();
  const double count = static_cast<double>(kernels::values_per_channel(input));
  auto mean = input.mean(dims, /*keepdim=*/true);
  auto centered = input - mean;
  auto var = (centered * centered).mean(dims, /*keepdim=*/true);
  auto invstd = (var + eps).rsqrt();
  auto xhat = centered * invstd;
  auto sum_dy = grad_out.sum(dims, /*keepdim=*/true);
  auto sum_dy_xhat = (grad_out * xhat).sum(dims, /*keepdim=*/true);
  auto scale = weight.defined() ? invstd * kernels::as_channel_view(weight, dim) : invstd;
  auto grad_input = scale * (grad_out - sum_dy / count - xhat * (sum_dy_xhat / count));
  return {grad_input.to(dtype), sum_dy_xhat.flatten().to(dtype), sum_dy.flatten().to(dtype)};
}

void check_batch_norm_arguments(const char* op, const Tensor& input, const c10::optional<Tensor>& weight,
                                const c10::optional<Tensor>& bias, const c10::optional<Tensor>& running_mean,
                                const c10::optional<Tensor>& running_var, bool training) {
  TORCH_CHECK(input.defined(), op, ": expected an input tensor, got an undefined tensor");
  TORCH_CHECK(input.dim() >= 2, op, ": expected an input of shape (N, C, *) with at least 2 dims, got ",
              input.dim(), "D input of shape ", input.sizes());
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op,
              ": expected a floating-point input, got ", input.scalar_type());
  check_per_channel(op, weight, "weight", input);
  check_per_channel(op, bias, "bias", input);
  check_per_channel(op, running_mean, "running_mean", input);
  check_per_channel(op, running_var, "running_var", input);
  TORCH_CHECK(is_defined(running_mean) == is_defined(running_var), op,
              ": expected running_mean and running_var to be both defined or both undefined, got ",
              is_defined(running_mean) ? "only running_mean" : "only running_var");
  TORCH_CHECK(training || is_defined(running_mean), op,
              ": eval mode (training=false) normalizes with running_mean and running_var, "
              "but they are undefined; pass them or use training=true");
  if (training) {
    // Same condition and message as PyTorch's F.batch_norm (_verify_batch_size).
    TORCH_CHECK(kernels::values_per_channel(input) != 1, op,
                ": Expected more than 1 value per channel when training, got input size ", input.sizes());
  }
}

}  // namespace detail

using detail::differentiable_train_backward;
using detail::is_defined;
using detail::value_or_undefined;

Tensor BatchNormFunction::forward(torch::autograd::AutogradContext* ctx, const Tensor& input,
                                  const c10::optional<Tensor>& weight,
                                  const c10::optional<Tensor>& bias,
                                  const c10::optional<Tensor>& running_mean,
                                  const c10::optional<Tensor>& running_var, bool training,
                                  double momentum, double eps, const nn::LayerProbe* probe) {
  detail::check_batch_norm_arguments(kOp, input, weight, bias, running_mean, running_var, training);
  const int64_t count = kernels::values_per_channel(input);

  const Tensor w = value_or_undefined(weight);
  const Tensor b = value_or_undefined(bias);
  Tensor mean;
  Tensor invstd;
  Tensor stats;
  if (probe != nullptr && probe->stats.defined()) {
    stats = probe->stats;
    TORCH_CHECK(stats.scalar_type() == torch::kDouble && stats.dim() == 1 &&
                    stats.numel() == nn::batch_norm_stat::kCount && stats.device() == input.device(),
                kOp, ": expected the probe's stats row to be float64 of ",
                static_cast<int64_t>(nn::batch_norm_stat::kCount), " slots on ", input.device(),
                ", got ", stats.scalar_type(), " of shape ", stats.sizes(), " on ", stats.device());
  }
  const Tensor running_m = value_or_undefined(running_mean);
  const Tensor running_v = value_or_undefined(running_var);
  Tensor output;
  if (kernels::cpu_kernels_apply(input)) {
    // bnlab's CPU kernels: statistics and normalization in two reads.
    auto r = kernels::batch_norm_forward_cpu(input, w, b, running_m, running_v, training, momentum, eps,
                                             stats, probe != nullptr ? probe->channel_stats : Tensor());
    output = r.output;
    mean = r.mean;
    invstd = r.invstd;
  } else if (training) {
    auto [batch_mean, batch_var] = kernels::batch_norm_stats(input);
    if (stats.defined()) {
      // Against the statistics eval mode would have used: before the update.
      kernels::batch_norm_drift_stats(stats, probe->channel_stats, batch_mean, batch_var, running_m,
                                      running_v, eps, input.size(1), count);
    }
    if (is_defined(running_mean)) {
      kernels::update_running_stats(*running_mean, *running_var, batch_mean, batch_var, count,
                                    momentum);
    }
    mean = batch_mean;
    invstd = kernels::invstd_from_var(batch_var, eps);
  } else {
    if (stats.defined()) {
      kernels::batch_norm_drift_stats(stats, probe->channel_stats, Tensor(), Tensor(), running_m,
                                      running_v, eps, input.size(1), count);
    }
    // Copies: the running buffers may be updated in place before this backward runs.
    const auto sdt = kernels::stats_dtype(input.scalar_type());
    mean = running_mean->to(sdt, /*non_blocking=*/false, /*copy=*/true);
    invstd = kernels::invstd_from_var(running_var->to(sdt), eps);
  }
  if (!output.defined()) {
    output = kernels::batch_norm_transform(input, mean, invstd, w, b);
    if (stats.defined()) kernels::batch_norm_output_stats(stats, output);
  }

  ctx->save_for_backward({input, w, mean, invstd});
  // Few saved_data entries: each is a string-keyed map insert on every call.
  ctx->saved_data["stats"] = stats;
  ctx->saved_data["eps"] = eps;
  ctx->saved_data["flags"] = static_cast<int64_t>((training ? kTraining : 0) | (w.defined() ? kHasWeight : 0) |
                                                  (b.defined() ? kHasBias : 0));
  return output;
}

torch::autograd::variable_list BatchNormFunction::backward(
    torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const Tensor& input = saved[0];
  const Tensor& weight = saved[1];
  const Tensor& mean = saved[2];
  const Tensor& invstd = saved[3];
  const int64_t flags = ctx->saved_data["flags"].toInt();
  const bool training = (flags & kTraining) != 0;
  const double eps = ctx->saved_data["eps"].toDouble();
  const bool has_weight = (flags & kHasWeight) != 0;
  const bool has_bias = (flags & kHasBias) != 0;
  const Tensor& grad_out = grad_outputs[0];

  // needs_input_grad counts only the tensor inputs that were given:
  // input, then weight and bias when defined.
  const bool need_input = ctx->needs_input_grad(0);
  const bool need_weight = has_weight && ctx->needs_input_grad(1);
  const bool need_bias = has_bias && ctx->needs_input_grad(has_weight ? 2 : 1);

  Tensor grad_input;
  Tensor grad_weight;
  Tensor grad_bias;
  bool probe_filled = false;  // the CPU kernels fill the probe's gradient slots themselves
  const int64_t dim = input.dim();
  const auto dims = kernels::reduction_dims(dim);
  if (at::GradMode::is_enabled()) {
    // create_graph: build the gradients from differentiable ops (see the header).
    if (training) {
      std::tie(grad_input, grad_weight, grad_bias) =
          differentiable_train_backward(grad_out, input, weight, eps);
    } else {
      auto scale = weight.defined() ? invstd * weight : invstd;
      grad_input = grad_out * kernels::as_channel_view(scale, dim);
      auto xhat = (input - kernels::as_channel_view(mean, dim)) * kernels::as_channel_view(invstd, dim);
      grad_weight = (grad_out * xhat).sum(dims);
      grad_bias = grad_out.sum(dims);
    }
  } else if (kernels::cpu_kernels_apply(input) && grad_out.device().is_cpu()) {
    const auto& stats_value = ctx->saved_data["stats"];
    const Tensor stats = stats_value.isTensor() ? stats_value.toTensor() : Tensor();
    std::tie(grad_input, grad_weight, grad_bias) =
        kernels::batch_norm_backward_cpu(grad_out, input, mean, invstd, weight, training, need_input, stats);
    probe_filled = true;
  } else {
    const int64_t count = kernels::values_per_channel(input);
    auto [sum_dy, sum_dy_xmu] = kernels::batch_norm_backward_reduce(grad_out, input, mean);
    if (need_input) {
      grad_input = training ? kernels::batch_norm_backward_input(grad_out, input, mean, invstd,
                                                                 weight, sum_dy, sum_dy_xmu, count)
                            : kernels::batch_norm_backward_input_eval(grad_out, invstd, weight);
    }
    // Σ g·x̂ = r·Σ g·(x − μ).
    if (need_weight) grad_weight = (sum_dy_xmu * invstd).to(input.scalar_type());
    if (need_bias) grad_bias = sum_dy.to(input.scalar_type());
  }
  const auto& stats_value = ctx->saved_data["stats"];
  if (!probe_filled && stats_value.isTensor() && stats_value.toTensor().defined()) {
    namespace slot = nn::batch_norm_stat;
    const Tensor stats = stats_value.toTensor();
    torch::NoGradGuard no_grad;
    kernels::sum_squares_and_nonfinite(grad_out.detach(), stats, slot::kGradOutputSumSq,
                                       slot::kNonFiniteGradInput);
    if (grad_input.defined()) {
      kernels::sum_squares_and_nonfinite(grad_input.detach(), stats, slot::kGradInputSumSq,
                                         slot::kNonFiniteGradInput);
    }
  }
  if (!need_input) grad_input = Tensor();
  if (!need_weight) grad_weight = Tensor();
  if (!need_bias) grad_bias = Tensor();
  return {grad_input, grad_weight, grad_bias, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(),
          Tensor()};
}

}  // namespace bnlab::autograd
