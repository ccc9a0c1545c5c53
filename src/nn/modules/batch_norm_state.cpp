#include "nn/modules/batch_norm_state.h"

#include <torch/nn/init.h>

#include <fmt/format.h>

#include <sstream>

namespace bnlab::nn::detail {

void register_batch_norm_tensors(torch::nn::Module& module, const BatchNormOptions& options,
                                 const BatchNormTensors& t) {
  const int64_t channels = options.num_features();
  if (options.affine()) {
    t.weight = module.register_parameter("weight", torch::empty({channels}));
    t.bias = module.register_parameter("bias", torch::empty({channels}));
  } else {
    t.weight = module.register_parameter("weight", torch::Tensor(), /*requires_grad=*/false);
    t.bias = module.register_parameter("bias", torch::Tensor(), /*requires_grad=*/false);
  }
  if (options.track_running_stats()) {
    t.running_mean = module.register_buffer("running_mean", torch::zeros({channels}));
    t.running_var = module.register_buffer("running_var", torch::ones({channels}));
    t.num_batches_tracked = module.register_buffer("num_batches_tracked", torch::tensor(0, torch::kLong));
  } else {
    t.running_mean = module.register_buffer("running_mean", torch::Tensor());
    t.running_var = module.register_buffer("running_var", torch::Tensor());
    t.num_batches_tracked = module.register_buffer("num_batches_tracked", torch::Tensor());
  }
  reset_parameters(options, t);
}

void reset_running_stats(const BatchNormOptions& options, const BatchNormTensors& t) {
  if (!options.track_running_stats()) return;
  torch::NoGradGuard no_grad;
  t.running_mean.zero_();
  t.running_var.fill_(1);
  t.num_batches_tracked.zero_();
}

void reset_parameters(const BatchNormOptions& options, const BatchNormTensors& t) {
  reset_running_stats(options, t);
  if (options.affine()) {
    torch::nn::init::ones_(t.weight);
    torch::nn::init::zeros_(t.bias);
  }
}

bool counts_batches(bool training, const BatchNormOptions& options, const torch::Tensor& num_batches_tracked) {
  return training && options.track_running_stats() && num_batches_tracked.defined();
}

double exponential_average_factor(bool training, const BatchNormOptions& options,
                                  const torch::Tensor& num_batches_tracked) {
  if (options.momentum().has_value() || !counts_batches(training, options, num_batches_tracked)) {
    return options.momentum().value_or(0.0);
  }
  // Cumulative moving average over the batches seen, this one included. Reads
  // the counter back from the device (as PyTorch does) only in this mode.
  return 1.0 / (num_batches_tracked.item<double>() + 1.0);
}

std::string options_string(const BatchNormOptions& options) {
  const std::string momentum = options.momentum().has_value() ? fmt::format("{}", *options.momentum()) : "None";
  std::ostringstream eps;
  eps << options.eps();  // the stream's default format, as torch prints it (1e-05)
  return fmt::format("eps={}, momentum={}, affine={}, track_running_stats={}", eps.str(), momentum,
                     options.affine(), options.track_running_stats());
}

void keep_counter_integral(torch::Tensor& num_batches_tracked) {
  if (num_batches_tracked.defined() && num_batches_tracked.scalar_type() != torch::kLong) {
    torch::NoGradGuard no_grad;
    num_batches_tracked.set_data(num_batches_tracked.to(torch::kLong));
  }
}

}  // namespace bnlab::nn::detail
