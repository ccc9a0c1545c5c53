#include "bnlab/nn/modules/batch_norm.h"

#include "bnlab/autograd/batch_norm.h"
#include "nn/modules/batch_norm_state.h"

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
detail::BatchNormTensors BatchNormImplBase<D, Derived>::tensors() {
  return {weight, bias, running_mean, running_var, num_batches_tracked};
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::reset() {
  detail::register_batch_norm_tensors(*this, options, tensors());
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::reset_running_stats() {
  detail::reset_running_stats(options, tensors());
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::reset_parameters() {
  detail::reset_parameters(options, tensors());
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::pretty_print(std::ostream& stream) const {
  stream << fmt::format("bnlab::nn::BatchNorm{}d({}, {})", D, options.num_features(), detail::options_string(options));
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
      detail::exponential_average_factor(this->is_training(), options, num_batches_tracked), options.eps(),
      probe_.get());
  capture(input, output);
  // Counted only once the forward succeeded: a rejected input changes no state.
  if (detail::counts_batches(this->is_training(), options, num_batches_tracked)) {
    torch::NoGradGuard no_grad;
    num_batches_tracked.add_(1);
  }
  return output;
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::to(torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(dtype, non_blocking);
  detail::keep_counter_integral(num_batches_tracked);
}

template <size_t D, typename Derived>
void BatchNormImplBase<D, Derived>::to(torch::Device device, torch::Dtype dtype,
                                       bool non_blocking) {
  torch::nn::Module::to(device, dtype, non_blocking);
  detail::keep_counter_integral(num_batches_tracked);
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
