// bnlab::nn::BatchNorm1d / BatchNorm2d / BatchNorm3d: drop-in replacements for
// torch::nn::BatchNorm{1,2,3}d backed by bnlab's hand-written autograd Function.
#pragma once

#include <bnlab/nn/options/batch_norm.h>
#include <bnlab/nn/probe.h>

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstddef>
#include <ostream>

namespace bnlab::nn {

namespace detail {
struct BatchNormTensors;
}  // namespace detail

/// What every bnlab BatchNorm module exposes, whatever its dimensionality, so
/// tools (the recorder, convert_sync_batchnorm) can find and inspect them.
class BatchNormLayer : public Probeable {
 public:
  /// The options the module was built with.
  virtual const BatchNormOptions& batch_norm_options() const = 0;
  /// The number of spatial dimensions D of the module's name (BatchNorm<D>d).
  virtual int64_t spatial_rank() const = 0;
};

/// Shared implementation of BatchNorm{1,2,3}d; the same parameters, buffers,
/// initialization and forward semantics as `torch::nn::BatchNormImplBase`:
///  - parameters `weight` (ones) and `bias` (zeros), undefined without `affine`;
///  - buffers `running_mean` (zeros), `running_var` (ones) and
///    `num_batches_tracked` (int64 scalar 0), undefined without
///    `track_running_stats`; every name is registered whatever the options.
template <size_t D, typename Derived>
class BatchNormImplBase : public torch::nn::Cloneable<Derived>, public BatchNormLayer {
 public:
  explicit BatchNormImplBase(const BatchNormOptions& options_);

  /// (Re)registers the parameters and buffers, then initializes them.
  void reset() override;
  /// running_mean ← 0, running_var ← 1, num_batches_tracked ← 0.
  void reset_running_stats();
  /// Resets the running statistics, weight ← 1 and bias ← 0.
  void reset_parameters();

  /// Prints e.g. `bnlab::nn::BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)`.
  void pretty_print(std::ostream& stream) const override;

  /// Normalizes `input` with batch statistics in training mode (updating the
  /// running ones) and with the running statistics in eval mode.
  torch::Tensor forward(const torch::Tensor& input);

  /// Like torch::nn::Module::to, but keeps `num_batches_tracked` an int64
  /// counter when the floating-point dtype changes (as PyTorch's Python modules do).
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  const BatchNormOptions& batch_norm_options() const override { return options; }
  int64_t spatial_rank() const override { return static_cast<int64_t>(D); }

  /// The options with which this module was constructed.
  BatchNormOptions options;
  /// Learned per-channel scale γ; undefined without `affine`.
  torch::Tensor weight;
  /// Learned per-channel shift β; undefined without `affine`.
  torch::Tensor bias;
  /// Running mean; undefined without `track_running_stats`.
  torch::Tensor running_mean;
  /// Running (unbiased) variance; undefined without `track_running_stats`.
  torch::Tensor running_var;
  /// Number of training-mode forward calls (int64 scalar); undefined without `track_running_stats`.
  torch::Tensor num_batches_tracked;

 protected:
  /// Throws unless `input` has a dimensionality this module accepts.
  virtual void check_input_dim(const torch::Tensor& input) const = 0;

 private:
  detail::BatchNormTensors tensors();
};

/// Batch normalization over (N, C) or (N, C, L) inputs.
class BatchNorm1dImpl : public BatchNormImplBase<1, BatchNorm1dImpl> {
 public:
  using BatchNormImplBase<1, BatchNorm1dImpl>::BatchNormImplBase;

 protected:
  void check_input_dim(const torch::Tensor& input) const override;
};
TORCH_MODULE(BatchNorm1d);

/// Batch normalization over (N, C, H, W) inputs.
class BatchNorm2dImpl : public BatchNormImplBase<2, BatchNorm2dImpl> {
 public:
  using BatchNormImplBase<2, BatchNorm2dImpl>::BatchNormImplBase;

 protected:
  void check_input_dim(const torch::Tensor& input) const override;
};
TORCH_MODULE(BatchNorm2d);

/// Batch normalization over (N, C, D, H, W) inputs.
class BatchNorm3dImpl : public BatchNormImplBase<3, BatchNorm3dImpl> {
 public:
  using BatchNormImplBase<3, BatchNorm3dImpl>::BatchNormImplBase;

 protected:
  void check_input_dim(const torch::Tensor& input) const override;
};
TORCH_MODULE(BatchNorm3d);

extern template class BatchNormImplBase<1, BatchNorm1dImpl>;
extern template class BatchNormImplBase<2, BatchNorm2dImpl>;
extern template class BatchNormImplBase<3, BatchNorm3dImpl>;

}  // namespace bnlab::nn
