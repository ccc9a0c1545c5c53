#include "bnlab/nn/modules/batch_norm.h"

#include "bnlab/autograd/batch_norm.h"

#include <torch/nn/init.h>

#include <fmt/format.h>

namespace bnlab::nn {

template <size_t D, typename Derived>
BatchNormImplBase<D, Derived>::BatchNormImplBase(const BatchNormOptions& options_)
    : options(options_) {
  TORCH_CHECK(options.num_features() > 0, "bnlab::nn::BatchNorm", D,
              "d: expected num_features > 0, got ", options.num_features());
  TORCH_CHECK(options.eps() >= 0, "bnlab::nn::BatchNorm", D, "d: expected eps >= 0, got ",
              options.eps());
  // NOLINTNEXTLINE(clang-analyzer-optin.cplusplus.VirtualCall): as in torch::nn
  reset();
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::reset() {
  // Every name is registered whatever the options (undefined when switched
  // off), so state dicts have the same keys as torch::nn::BatchNorm's.
  const int64_t channels = options.num_features();
  if (options.affine()) {
    weight = this->register_parameter("weight", torch::empty({channels}));
    bias = this->register_parameter("bias", torch::empty({channels}));
  } else {
    weight = this->register_parameter("weight", torch::Tensor(), /*requires_grad=*/false);
    bias = this->register_parameter("bias", torch::Tensor(), /*requires_grad=*/false);
  }
  if (options.track_running_stats()) {
    running_mean = this->register_buffer("running_mean", torch::zeros({channels}));
    running_var = this->register_buffer("running_var", torch::ones({channels}));
    num_batches_tracked =
        this->register_buffer("num_batches_tracked", torch::tensor(0, torch::kLong));
  } else {
    running_mean = this->register_buffer("running_mean", torch::Tensor());
    running_var = this->register_buffer("running_var", torch::Tensor());
    num_batches_tracked = this->register_buffer("num_batches_tracked", torch::Tensor());
  }
  reset_parameters();
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::reset_running_stats() {
  if (!options.track_running_stats()) return;
  torch::NoGradGuard no_grad;
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::reset_parameters() {
  reset_running_stats();
  if (options.affine()) {
    torch::nn::init::ones_(weight);
    torch::nn::init::zeros_(bias);
  }
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::pretty_print(std::ostream& stream) const {
  const std::string momentum =
      options.momentum().has_value() ? fmt::format("{}", *options.momentum()) : "None";
  std::ostringstream eps;
  eps << options.eps();  // the stream's default format, as torch prints it (1e-05)
  stream << fmt::format("bnlab::nn::BatchNorm{}d({}, eps={}, momentum={}, affine={}, "
                        "track_running_stats={})",
                        D, options.num_features(), eps.str(), momentum, options.affine(),
                        options.track_running_stats());
}

template <size_t D, typename Derived>
bool BatchNormImplBase<D, Derived>::counts_batches() const {
  return this->is_training() && options.track_running_stats() && num_batches_tracked.defined();
}

template <size_t D, typename Derived>
double BatchNormImplBase<D, Derived>::exponential_average_factor() const {
  if (options.momentum().has_value() || !counts_batches()) return options.momentum().value_or(0.0);
  // Cumulative moving average over the batches seen, this one included. Reads
  // the counter back from the device (as PyTorch does) only in this mode.
  return 1.0 / (num_batches_tracked.item<double>() + 1.0);
}

template <size_t D, typename Derived>
torch::Tensor BatchNormImplBase<D, Derived>::forward(const torch::Tensor& input) {
  check_input_dim(input);
  TORCH_CHECK(input.size(1) == options.num_features(), "bnlab::nn::BatchNorm", D,
              "d: expected input with ", options.num_features(),
              " channels (dim 1, num_features), got ", input.size(1), " channels in input of shape ",
              input.sizes());
  const bool use_batch_stats = this->is_training() || !options.track_running_stats();
  const bool pass_running = !this->is_training() || options.track_running_stats();
  auto optional = [](const torch::Tensor& t) {
    return t.defined() ? c10::optional<torch::Tensor>(t) : c10::nullopt;
  };
  // The module calls the Function directly (the functional's arguments plus
  // the recorder's probe); the functional's momentum check does not apply:
  // the module resolves a cumulative average itself.
  auto output = autograd::BatchNormFunction::apply(
      input, optional(weight), optional(bias), optional(pass_running ? running_mean : torch::Tensor()),
      optional(pass_running ? running_var : torch::Tensor()), use_batch_stats,
      exponential_average_factor(), options.eps(), probe_.get());
  capture(input, output);
  // Counted only once the forward succeeded: a rejected input changes no state.
  if (counts_batches()) {
    torch::NoGradGuard no_grad;
    num_batches_tracked.add_(1);
  }
  return output;
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::keep_counter_integral() {
  if (num_batches_tracked.defined() && num_batches_tracked.scalar_type() != torch::kLong) {
    torch::NoGradGuard no_grad;
    num_batches_tracked.set_data(num_batches_tracked.to(torch::kLong));
  }
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::to(torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(dtype, non_blocking);
  keep_counter_integral();
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::to(torch::Device device, torch::Dtype dtype,
                                       bool non_blocking) {
  torch::nn::Module::to(device, dtype, non_blocking);
  keep_counter_integral();
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
}

template class BatchNormImplBase<1, BatchNorm1dImpl>;
template class BatchNormImplBase<2, BatchNorm2dImpl>;
template class BatchNormImplBase<3, BatchNorm3dImpl>;

void BatchNorm1dImpl::check_input_dim(const torch::Tensor& input) const {
  TORCH_CHECK(input.dim() == 2 || input.dim() == 3,
              "bnlab::nn::BatchNorm1d: expected 2D (N, C) or 3D (N, C, L) input (got ",
              input.dim(), "D input)");
}

void BatchNorm2dImpl::check_input_dim(const torch::Tensor& input) const {
  TORCH_CHECK(input.dim() == 4, "bnlab::nn::BatchNorm2d: expected 4D (N, C, H, W) input (got ",
              input.dim(), "D input)");
}

void BatchNorm3dImpl::check_input_dim(const torch::Tensor& input) const {
  TORCH_CHECK(input.dim() == 5,
              "bnlab::nn::BatchNorm3d: expected 5D (N, C, D, H, W) input (got ", input.dim(),
              "D input)");
}

}  // namespace bnlab::nn
