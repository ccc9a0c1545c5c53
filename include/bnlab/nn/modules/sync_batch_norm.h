// bnlab::nn::SyncBatchNorm: BatchNorm whose training statistics span every
// rank of a process group (data-parallel training), and
// convert_sync_batchnorm to switch a model's BatchNorm layers over.
#pragma once

#include <bnlab/nn/modules/batch_norm.h>
#include <bnlab/nn/options/sync_batch_norm.h>

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <memory>
#include <ostream>

namespace bnlab::nn {

/// Batch normalization of the global batch across the ranks of
/// options.process_group() (see autograd::SyncBatchNormFunction for the
/// maths): in training mode every rank normalizes with the statistics of all
/// ranks' examples together and updates identical running statistics; in eval
/// mode (or without a group of more than one rank) it is BatchNorm. Any input
/// (N, C, *) with N ≥ 0 on a rank, as long as the global batch has more than
/// one value per channel. The same parameter and buffer names as BatchNorm, so
/// state dicts interchange. Every rank must run the same forwards and
/// backwards (they are collectives).
class SyncBatchNormImpl : public torch::nn::Cloneable<SyncBatchNormImpl>, public BatchNormLayer {
 public:
  explicit SyncBatchNormImpl(const SyncBatchNormOptions& options_);

  void reset() override;
  void reset_running_stats();
  void reset_parameters();
  /// Prints e.g. `bnlab::nn::SyncBatchNorm(64, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true, world_size=2)`.
  void pretty_print(std::ostream& stream) const override;

  torch::Tensor forward(const torch::Tensor& input);

  /// Keeps `num_batches_tracked` an int64 counter across dtype changes.
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  const BatchNormOptions& batch_norm_options() const override { return bn_options_; }
  /// Any number of spatial dimensions: -1.
  int64_t spatial_rank() const override { return -1; }

  /// A SyncBatchNorm with `from`'s parameters and buffers (the same tensors,
  /// not copies, so an optimizer that holds them keeps working) and its
  /// train/eval mode; `from` is a BatchNorm with the same names.
  static std::shared_ptr<SyncBatchNormImpl> adopting(const SyncBatchNormOptions& options, torch::nn::Module& from);

  SyncBatchNormOptions options;
  torch::Tensor weight;
  torch::Tensor bias;
  torch::Tensor running_mean;
  torch::Tensor running_var;
  torch::Tensor num_batches_tracked;

 private:
  struct Adopt {};
  SyncBatchNormImpl(const SyncBatchNormOptions& options_, Adopt);
  BatchNormOptions bn_options_;
};
TORCH_MODULE(SyncBatchNorm);

/// Replaces every bnlab BatchNorm{1,2,3}d in `module`'s tree by a
/// SyncBatchNorm over `process_group` that keeps its parameters and buffers
/// (the same tensors) and mode, and returns the module (a new SyncBatchNorm if
/// `module` itself is a BatchNorm). Layers are swapped inside
/// torch::nn::Sequential and ModuleList, whose forward uses what they hold.
/// A BatchNorm registered directly in another module cannot be swapped (that
/// module's forward calls its own handle): that is an error naming the layer;
/// build such models with SyncBatchNorm directly. BatchNormAct layers are
/// left as they are (their statistics stay per rank), with a warning.
std::shared_ptr<torch::nn::Module> convert_sync_batchnorm(std::shared_ptr<torch::nn::Module> module,
                                                          const distributed::ProcessGroupPtr& process_group);

}  // namespace bnlab::nn
