// bnlab::distributed::DataParallel: what data-parallel training needs beyond
// SyncBatchNorm — the same starting state on every rank, gradients averaged
// across ranks in buckets, each rank's share of a batch, and small sums (the
// loss, a stop request) that every rank agrees on.
#pragma once

#include <bnlab/distributed/process_group.h>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace bnlab::distributed {

struct DataParallelOptions {
  /// Gradients are flattened into buckets of at most this many bytes, one
  /// all-reduce each (all in flight together): few large messages instead of
  /// one per parameter.
  TORCH_ARG(int64_t, bucket_bytes) = int64_t{25} << 20;
};

class DataParallel {
 public:
  DataParallel(std::shared_ptr<torch::nn::Module> module, ProcessGroupPtr group, DataParallelOptions options = {});

  /// Every rank's parameters and buffers become rank 0's.
  void broadcast_state();
  /// Every parameter's gradient becomes the mean over ranks (a rank without a
  /// gradient for a parameter contributes zeros; one is created where missing
  /// so all ranks stay identical).
  void average_gradients();
  /// Element-wise sums over ranks of a few numbers (in float64).
  std::vector<double> sum(const std::vector<double>& values, const char* what);
  /// Rows [begin, end) of a global batch of `n` examples that this rank takes:
  /// contiguous slices, sizes differing by at most one (some may be empty).
  std::pair<int64_t, int64_t> shard(int64_t n) const;

  int64_t rank() const { return group_->getRank(); }
  int64_t world_size() const { return group_->getSize(); }
  const ProcessGroupPtr& group() const { return group_; }

 private:
  std::shared_ptr<torch::nn::Module> module_;
  ProcessGroupPtr group_;
  DataParallelOptions options_;
};

}  // namespace bnlab::distributed
