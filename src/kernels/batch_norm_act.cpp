#include "kernels/batch_norm_act.h"

#include "bnlab/nn/probe.h"
#include "kernels/activation.h"
#include "kernels/batch_norm.h"
#include "kernels/cpu/batch_norm_act_kernel.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <cmath>
#include <vector>

namespace bnlab::kernels {

namespace cpu {
KernelStub<BatchNormActForwardFn> batch_norm_act_forward_stub;
KernelStub<BatchNormActBackwardFn> batch_norm_act_backward_stub;
}  // namespace cpu

namespace {

namespace slot = nn::activation_stat;

bool fused_kernels_apply(const torch::Tensor& input, const torch::Tensor& stats) {
  return cpu_kernels_apply(input) && (!stats.defined() || stats.device().is_cpu()) &&
         cpu::batch_norm_act_forward_stub.get() != nullptr;
}

// z at the memory positions of a dense input that sample_plan keeps (the
// percentiles' sample, as copy_input_sample takes it from an activation's input).
void sample_preactivations(const torch::Tensor& input, const cpu::BatchNormLayout& L, const std::vector<double>& mean,
                           const std::vector<double>& scale, const std::vector<double>& shift,
                           const torch::Tensor& sample, double* stats) {
  const auto [stride, count] = sample_plan(input.numel(), sample.numel(), sample_period(input));
  float* out = sample.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "bnlab_batch_norm_act_sample", [&] {
    const auto* x = input.data_ptr<scalar_t>();
    for (int64_t i = 0; i < count; ++i) {
      const int64_t m = i * stride;
      const auto c = static_cast<size_t>(L.channel_minor ? m % L.channels : (m / L.inner) % L.channels);
      out[i] = static_cast<float>((static_cast<double>(x[m]) - mean[c]) * scale[c] + shift[c]);
    }
  });
  stats[slot::kSampleCount] = static_cast<double>(count);
}

BatchNormActForward forward_cpu(const torch::Tensor& input_in, const torch::Tensor& weight, const torch::Tensor& bias,
                                const torch::Tensor& running_mean, const torch::Tensor& running_var, bool training,
                                double momentum, double eps, const autograd::ActivationParams& params,
                                const torch::Tensor& stats, const torch::Tensor& sample,
                                const torch::Tensor& channel_stats) {
  auto layout = detail::kernel_layout(input_in);
  const torch::Tensor input = layout.has_value() ? input_in : input_in.contiguous();
  if (!layout.has_value()) layout = detail::kernel_layout(input);
  const int64_t C = input.size(1);
  const int64_t count = values_per_channel(input);
  const auto csize = static_cast<size_t>(C);
  std::vector<double> mean(csize), var(csize), invstd(csize);
  cpu::BatchNormActForwardArgs args;
  args.training = training;
  args.eps = eps;
  args.weight = weight.defined() ? weight.contiguous() : weight;
  args.bias = bias.defined() ? bias.contiguous() : bias;
  if (!training) {
    mean = detail::to_doubles(running_mean);
    const auto rv = detail::to_doubles(running_var);
    for (size_t c = 0; c < csize; ++c) invstd[c] = 1.0 / std::sqrt(rv[c] + eps);
  }
  args.mean = mean.data();
  args.var = var.data();
  args.invstd = invstd.data();
  double* s = stats.defined() ? stats.data_ptr<double>() : nullptr;
  if (s != nullptr) {
    s[slot::kInputCount] = static_cast<double>(input.numel());
    s[slot::kOutputCount] = static_cast<double>(input.numel());
    s[slot::kUnits] = static_cast<double>(C);
  }
  args.act_stats = s;
  BatchNormActForward out;
  out.output = torch::empty_like(input);
  cpu::batch_norm_act_forward_stub.get()(input, out.output, *layout, params, args);
  // Against the running statistics before this batch's update, as BatchNorm's probe.
  if (channel_stats.defined()) {
    batch_norm_channel_stats(channel_stats, training ? mean.data() : nullptr, training ? var.data() : nullptr,
                             running_mean, running_var, C);
  }
  if (training) detail::update_running_stats_cpu(running_mean, running_var, mean, var, count, momentum);
  if (sample.defined() && s != nullptr) {
    std::vector<double> scale(csize), shift(csize, 0.0);
    const auto w = weight.defined() ? detail::to_doubles(weight) : std::vector<double>();
    const auto b = bias.defined() ? detail::to_doubles(bias) : std::vector<double>();
    for (size_t c = 0; c < csize; ++c) {
      scale[c] = invstd[c] * (weight.defined() ? w[c] : 1.0);
      if (bias.defined()) shift[c] = b[c];
    }
    sample_preactivations(input, *layout, mean, scale, shift, sample, s);
  }
  const auto sdt = stats_dtype(input.scalar_type());
  out.mean = detail::from_doubles(mean, sdt);
  out.invstd = detail::from_doubles(invstd, sdt);
  return out;
}

}  // namespace

BatchNormActForward batch_norm_act_forward(const torch::Tensor& input, const torch::Tensor& weight,
                                           const torch::Tensor& bias, const torch::Tensor& running_mean,
                                           const torch::Tensor& running_var, bool training, double momentum,
                                           double eps, const autograd::ActivationParams& params,
                                           const torch::Tensor& stats, const torch::Tensor& sample,
                                           const torch::Tensor& channel_stats) {
  if (fused_kernels_apply(input, stats) && (!sample.defined() || sample.device().is_cpu()) &&
      (!channel_stats.defined() || channel_stats.device().is_cpu())) {
    return forward_cpu(input, weight, bias, running_mean, running_var, training, momentum, eps, params, stats,
                       sample, channel_stats);
  }
  // Composite: BatchNorm, then the activation on the materialized z.
  BatchNormActForward out;
  const int64_t count = values_per_channel(input);
  if (training) {
    auto [batch_mean, batch_var] = batch_norm_stats(input);
    if (channel_stats.defined()) {
      batch_norm_channel_stats(channel_stats, batch_mean, batch_var, running_mean, running_var, input.size(1));
    }
    if (running_mean.defined()) update_running_stats(running_mean, running_var, batch_mean, batch_var, count, momentum);
    out.mean = batch_mean;
    out.invstd = invstd_from_var(batch_var, eps);
  } else {
    if (channel_stats.defined()) {
      batch_norm_channel_stats(channel_stats, torch::Tensor(), torch::Tensor(), running_mean, running_var,
                               input.size(1));
    }
    const auto sdt = stats_dtype(input.scalar_type());
    out.mean = running_mean.to(sdt, /*non_blocking=*/false, /*copy=*/true);
    out.invstd = invstd_from_var(running_var.to(sdt), eps);
  }
  const auto z = batch_norm_transform(input, out.mean, out.invstd, weight, bias);
  out.output = torch::empty_like(z);
  activation_forward(z, out.output, params, stats, sample);
  return out;
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> batch_norm_act_backward(
    const torch::Tensor& grad_output, const torch::Tensor& input_in, const torch::Tensor& output_in,
    const torch::Tensor& mean, const torch::Tensor& invstd, const torch::Tensor& weight, const torch::Tensor& bias,
    const autograd::ActivationParams& params, bool training, bool need_input, const torch::Tensor& stats) {
  const auto dtype = input_in.scalar_type();
  if (fused_kernels_apply(input_in, stats) && grad_output.device().is_cpu() &&
      cpu::batch_norm_act_backward_stub.get() != nullptr) {
    auto layout = detail::kernel_layout(input_in);
    const torch::Tensor input = layout.has_value() ? input_in : input_in.contiguous();
    if (!layout.has_value()) layout = detail::kernel_layout(input);
    auto like_input = [&](const torch::Tensor& t) {
      const bool same = t.sizes() == input.sizes() && t.strides() == input.strides() && t.scalar_type() == dtype;
      return same ? t : torch::empty_like(input).copy_(t);
    };
    const torch::Tensor g = like_input(grad_output);
    const torch::Tensor y = autograd::derivative_from_output(params.kind) ? like_input(output_in) : torch::Tensor();
    const int64_t C = input.size(1);
    const auto mean_d = detail::to_doubles(mean);
    const auto invstd_d = detail::to_doubles(invstd);
    const auto weight_d = weight.defined() ? detail::to_doubles(weight) : std::vector<double>();
    const auto bias_d = bias.defined() ? detail::to_doubles(bias) : std::vector<double>();
    std::vector<double> sum_dz(static_cast<size_t>(C)), sum_dz_xmu(static_cast<size_t>(C));
    cpu::BatchNormActBackwardArgs args;
    args.mean = mean_d.data();
    args.invstd = invstd_d.data();
    args.weight = weight.defined() ? weight_d.data() : nullptr;
    args.bias = bias.defined() ? bias_d.data() : nullptr;
    args.count = static_cast<double>(values_per_channel(input));
    args.eval = !training;
    args.sum_dz = sum_dz.data();
    args.sum_dz_xmu = sum_dz_xmu.data();
    args.act_stats = stats.defined() ? stats.data_ptr<double>() : nullptr;
    torch::Tensor grad_input = need_input ? torch::empty_like(input) : torch::Tensor();
    cpu::batch_norm_act_backward_stub.get()(g, input, y, grad_input, *layout, params, args);
    std::vector<double> grad_weight(static_cast<size_t>(C));
    for (size_t c = 0; c < grad_weight.size(); ++c) grad_weight[c] = sum_dz_xmu[c] * invstd_d[c];
    return {grad_input, detail::from_doubles(grad_weight, dtype), detail::from_doubles(sum_dz, dtype)};
  }
  // Composite: z again, the activation's backward, then BatchNorm's.
  const auto z = batch_norm_transform(input_in, mean, invstd, weight, bias);
  const bool from_output = autograd::derivative_from_output(params.kind);
  const auto dz = activation_backward(grad_output, from_output ? output_in : z, from_output, params, stats);
  const int64_t count = values_per_channel(input_in);
  auto [sum_dz, sum_dz_xmu] = batch_norm_backward_reduce(dz, input_in, mean);
  torch::Tensor grad_input;
  if (need_input) {
    grad_input = training ? batch_norm_backward_input(dz, input_in, mean, invstd, weight, sum_dz, sum_dz_xmu, count)
                          : batch_norm_backward_input_eval(dz, invstd, weight);
  }
  return {grad_input, (sum_dz_xmu * invstd).to(dtype), sum_dz.to(dtype)};
}

}  // namespace bnlab::kernels
