#include "bnlab/autograd/sync_batch_norm.h"

#include "autograd/batch_norm_internal.h"
#include "kernels/batch_norm.h"
#include "kernels/reduce.h"

namespace bnlab::autograd {

namespace {

using torch::Tensor;

constexpr const char* kOp = "bnlab::sync_batch_norm";

}  // namespace

Tensor SyncBatchNormFunction::forward(torch::autograd::AutogradContext* ctx, const Tensor& input,
                                      const c10::optional<Tensor>& weight, const c10::optional<Tensor>& bias,
                                      const c10::optional<Tensor>& running_mean,
                                      const c10::optional<Tensor>& running_var, double momentum, double eps,
                                      const distributed::ProcessGroupPtr& group, const nn::LayerProbe* probe) {
  TORCH_CHECK(group, kOp, ": expected a process group, got none");
  TORCH_CHECK(input.dim() >= 2, kOp, ": expected input of shape (N, C, *) with at least 2 dimensions, got ",
              input.dim(), "D input of shape ", input.sizes());
  TORCH_CHECK(input.is_floating_point(), kOp, ": expected a floating-point input, got ", input.scalar_type());
  for (const auto& [t, name] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"},
                                std::pair{&running_mean, "running_mean"}, std::pair{&running_var, "running_var"}}) {
    detail::check_per_channel(kOp, *t, name, input);
  }
  TORCH_CHECK(detail::is_defined(running_mean) == detail::is_defined(running_var), kOp,
              ": expected running_mean and running_var both defined or both undefined");
  Tensor stats;
  if (probe != nullptr && probe->stats.defined()) {
    stats = probe->stats;
    TORCH_CHECK(stats.scalar_type() == torch::kDouble && stats.numel() == nn::batch_norm_stat::kCount, kOp,
                ": expected the probe's stats row to be float64 of ", static_cast<int64_t>(nn::batch_norm_stat::kCount),
                " slots, got ", stats.scalar_type(), " of shape ", stats.sizes());
  }
  const int64_t channels = input.size(1);
  const auto sdt = kernels::stats_dtype(input.scalar_type());

  // This rank's (M_r, μ_r, σ²_r), gathered in float64 whatever the input dtype.
  const int64_t local_count = kernels::values_per_channel(input);
  auto [local_mean, local_var] = kernels::batch_norm_stats(input.detach());
  auto packed = torch::cat({torch::full({1}, static_cast<double>(local_count), local_mean.options().dtype(torch::kDouble)),
                            local_mean.to(torch::kDouble), local_var.to(torch::kDouble)});
  const Tensor gathered = distributed::all_gather(group, packed, "SyncBatchNorm forward");  // (W, 1 + 2C)
  const Tensor counts = gathered.select(1, 0).unsqueeze(1);                                  // (W, 1)
  const Tensor means = gathered.narrow(1, 1, channels);
  const Tensor vars = gathered.narrow(1, 1 + channels, channels);
  const double total = counts.sum().item<double>();
  TORCH_CHECK(total > 1, kOp, ": expected more than 1 value per channel across all ranks when training, got ",
              static_cast<int64_t>(total), " (input of shape ", input.sizes(), " on this rank)");
  const Tensor mean64 = (counts * means).sum(0) / total;
  const Tensor var64 = (counts * (vars + (means - mean64).square())).sum(0) / total;
  const Tensor mean = mean64.to(sdt);
  const Tensor var = var64.to(sdt);
  const auto global_count = static_cast<int64_t>(total);

  const Tensor running_m = detail::value_or_undefined(running_mean);
  const Tensor running_v = detail::value_or_undefined(running_var);
  if (stats.defined()) {
    kernels::batch_norm_drift_stats(stats, probe->channel_stats, mean, var, running_m, running_v, eps, channels,
                                    global_count);
  }
  if (running_m.defined()) kernels::update_running_stats(running_m, running_v, mean, var, global_count, momentum);
  const Tensor invstd = kernels::invstd_from_var(var, eps);
  const Tensor w = detail::value_or_undefined(weight);
  Tensor output = kernels::batch_norm_transform(input, mean, invstd, w, detail::value_or_undefined(bias));
  if (stats.defined()) kernels::batch_norm_output_stats(stats, output);

  ctx->save_for_backward({input, w, mean, invstd});
  ctx->saved_data["group"] = c10::IValue::make_capsule(group);
  ctx->saved_data["count"] = global_count;
  ctx->saved_data["stats"] = stats;
  ctx->saved_data["has_bias"] = detail::is_defined(bias);
  return output;
}

torch::autograd::variable_list SyncBatchNormFunction::backward(torch::autograd::AutogradContext* ctx,
                                                               torch::autograd::variable_list grad_outputs) {
  TORCH_CHECK(!at::GradMode::is_enabled(), kOp,
              ": expected a first-order backward; double backward (create_graph=true) through a synchronized "
              "BatchNorm is not supported");
  const auto saved = ctx->get_saved_variables();
  const Tensor& input = saved[0];
  const Tensor& weight = saved[1];
  const Tensor& mean = saved[2];
  const Tensor& invstd = saved[3];
  const auto group = c10::static_intrusive_pointer_cast<c10d::ProcessGroup>(ctx->saved_data["group"].toCapsule());
  const int64_t count = ctx->saved_data["count"].toInt();
  const bool has_weight = weight.defined();
  const bool has_bias = ctx->saved_data["has_bias"].toBool();
  const Tensor grad_out = grad_outputs[0].defined() ? grad_outputs[0] : torch::zeros_like(input);

  auto [sum_dy, sum_dy_xmu] = kernels::batch_norm_backward_reduce(grad_out, input, mean);
  const bool need_input = ctx->needs_input_grad(0);
  const bool need_weight = has_weight && ctx->needs_input_grad(1);
  const bool need_bias = has_bias && ctx->needs_input_grad(has_weight ? 2 : 1);
  Tensor grad_weight = need_weight ? (sum_dy_xmu * invstd).to(input.scalar_type()) : Tensor();
  Tensor grad_bias = need_bias ? sum_dy.to(input.scalar_type()) : Tensor();

  // Every rank takes part, whatever it needs: a collective skipped by one rank
  // would leave the others waiting.
  const int64_t channels = input.size(1);
  std::vector<Tensor> sums{torch::cat({sum_dy, sum_dy_xmu}).to(torch::kDouble).contiguous()};
  distributed::all_reduce_sum(group, sums, "SyncBatchNorm backward");
  const auto sdt = sum_dy.scalar_type();
  Tensor grad_input;
  if (need_input) {
    grad_input = kernels::batch_norm_backward_input(grad_out, input, mean, invstd, weight,
                                                    sums[0].narrow(0, 0, channels).to(sdt),
                                                    sums[0].narrow(0, channels, channels).to(sdt), count);
  }
  const auto& stats_value = ctx->saved_data["stats"];
  if (stats_value.isTensor() && stats_value.toTensor().defined()) {
    namespace slot = nn::batch_norm_stat;
    const Tensor stats = stats_value.toTensor();
    kernels::sum_squares_and_nonfinite(grad_out, stats, slot::kGradOutputSumSq, slot::kNonFiniteGradInput);
    if (grad_input.defined()) {
      kernels::sum_squares_and_nonfinite(grad_input, stats, slot::kGradInputSumSq, slot::kNonFiniteGradInput);
    }
  }
  return {grad_input, grad_weight, grad_bias, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
}

}  // namespace bnlab::autograd
