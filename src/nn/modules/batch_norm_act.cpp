#include "bnlab/nn/modules/batch_norm_act.h"

#include "bnlab/autograd/batch_norm.h"
#include "bnlab/autograd/batch_norm_act.h"
#include "kernels/batch_norm.h"
#include "nn/modules/batch_norm_state.h"

#include <fmt/format.h>

namespace bnlab::nn {

namespace {

constexpr const char* kModule = "bnlab::nn::BatchNormAct";

c10::optional<torch::Tensor> optional(const torch::Tensor& t) {
  return t.defined() ? c10::optional<torch::Tensor>(t) : c10::nullopt;
}

}  // namespace

BatchNormActImpl::BatchNormActImpl(const BatchNormActOptions& options_) : options(options_) {
  TORCH_CHECK(options.num_features() > 0, kModule, ": expected num_features > 0, got ", options.num_features());
  TORCH_CHECK(options.eps() >= 0, kModule, ": expected eps >= 0, got ", options.eps());
  // NOLINTNEXTLINE(clang-analyzer-optin.cplusplus.VirtualCall): as in torch::nn
  reset();
}

void BatchNormActImpl::reset() {
  activation_ = make_activation(options.activation(), options.activation_options());
  activation_layer_ = dynamic_cast<ActivationLayer*>(activation_.ptr().get());
  TORCH_CHECK(activation_layer_ != nullptr, kModule, ": ", options.activation(), " is not a bnlab activation");
  detail::register_batch_norm_tensors(*this, options.batch_norm(),
                                      {weight, bias, running_mean, running_var, num_batches_tracked});
}

void BatchNormActImpl::reset_running_stats() {
  detail::reset_running_stats(options.batch_norm(), {weight, bias, running_mean, running_var, num_batches_tracked});
}

void BatchNormActImpl::reset_parameters() {
  detail::reset_parameters(options.batch_norm(), {weight, bias, running_mean, running_var, num_batches_tracked});
}

void BatchNormActImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format("bnlab::nn::BatchNormAct({}, activation={}, {})", options.num_features(),
                        options.activation(), detail::options_string(options.batch_norm()));
}

torch::Tensor BatchNormActImpl::forward(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() >= 2, kModule, ": expected an input of shape (N, C, *) with at least 2 dims, got ",
              input.dim(), "D input of shape ", input.sizes());
  TORCH_CHECK(input.size(1) == options.num_features(), kModule, ": expected input with ", options.num_features(),
              " channels (dim 1, num_features), got ", input.size(1), " channels in input of shape ", input.sizes());
  const auto bn = options.batch_norm();
  const bool training = is_training();
  const bool use_batch_stats = training || !bn.track_running_stats();
  const bool pass_running = !training || bn.track_running_stats();
  const double momentum = detail::exponential_average_factor(training, bn, num_batches_tracked);
  const auto rm = optional(pass_running ? running_mean : torch::Tensor());
  const auto rv = optional(pass_running ? running_var : torch::Tensor());
  torch::Tensor output;
  const auto params = activation_layer_->elementwise_params();
  if (params.has_value()) {
    output = autograd::BatchNormActFunction::apply(input, optional(weight), optional(bias), rm, rv, use_batch_stats,
                                                   momentum, bn.eps(), *params, probe_.get());
    if (probe_ && probe_->capture_tensors) {
      capture(normalized(input), output);
    } else {
      capture(input, output);  // only the forward order is taken from it
    }
  } else {
    // Not elementwise (Maxout): BatchNorm, then the activation, which reports
    // to this module's probe.
    auto z = autograd::BatchNormFunction::apply(input, optional(weight), optional(bias), rm, rv, use_batch_stats,
                                                momentum, bn.eps(), nullptr);
    activation_layer_->set_probe(probe_);
    output = activation_.forward(z);
  }
  // Counted only once the forward succeeded: a rejected input changes no state.
  if (detail::counts_batches(training, bn, num_batches_tracked)) {
    torch::NoGradGuard no_grad;
    num_batches_tracked.add_(1);
  }
  return output;
}

torch::Tensor BatchNormActImpl::normalized(const torch::Tensor& input) const {
  torch::NoGradGuard no_grad;
  const auto bn = options.batch_norm();
  const bool use_batch_stats = is_training() || !bn.track_running_stats();
  torch::Tensor mean, invstd;
  if (use_batch_stats) {
    auto [m, v] = kernels::batch_norm_stats(input);
    mean = m;
    invstd = kernels::invstd_from_var(v, bn.eps());
  } else {
    const auto sdt = kernels::stats_dtype(input.scalar_type());
    mean = running_mean.to(sdt);
    invstd = kernels::invstd_from_var(running_var.to(sdt), bn.eps());
  }
  return kernels::batch_norm_transform(input, mean, invstd, weight, bias);
}

torch::Tensor BatchNormActImpl::saturated(const torch::Tensor& input) const {
  return activation_layer_->saturated(normalized(input));
}

torch::Tensor BatchNormActImpl::local_derivative(const torch::Tensor& input) const {
  return activation_layer_->local_derivative(normalized(input));
}

double BatchNormActImpl::max_local_derivative() const { return activation_layer_->max_local_derivative(); }

std::string BatchNormActImpl::activation_name() const { return activation_layer_->activation_name(); }

bool BatchNormActImpl::can_saturate() const { return activation_layer_->can_saturate(); }

c10::optional<std::pair<double, double>> BatchNormActImpl::output_bounds() const {
  return activation_layer_->output_bounds();
}

c10::optional<autograd::ActivationParams> BatchNormActImpl::elementwise_params() const {
  return activation_layer_->elementwise_params();
}

void BatchNormActImpl::to(torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(dtype, non_blocking);
  detail::keep_counter_integral(num_batches_tracked);
}

void BatchNormActImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(device, dtype, non_blocking);
  detail::keep_counter_integral(num_batches_tracked);
}

void BatchNormActImpl::to(torch::Device device, bool non_blocking) { torch::nn::Module::to(device, non_blocking); }

}  // namespace bnlab::nn
