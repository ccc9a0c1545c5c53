// bnlab::optim::SGD: torch::optim::SGD with a fused, one-pass step.
#pragma once

#include <bnlab/optim/state_key_cache.h>
#include <bnlab/optim/update_statistics.h>

#include <torch/optim/sgd.h>

namespace bnlab::optim {

/// A drop-in torch::optim::SGD (the same SGDOptions, parameter groups, state
/// and serialization: its state dict loads into torch::optim::SGD and back)
/// whose step updates each contiguous CPU float/double parameter in one pass
/// over θ, its gradient and its momentum buffer, with the arithmetic and
/// rounding of torch::optim::SGD's ops:
///
///     d = g + λθ;  buf = μ·buf + (1 − τ)·d  (buf = d on the first step);
///     d = d + μ·buf (Nesterov) or buf;  θ = θ − η·d
///
/// torch::optim::SGD spends several tensor ops, temporary tensors and a
/// string-keyed state lookup per parameter on every step; for a small MLP that
/// is most of the step's non-GEMM time. Parameters elsewhere (another device,
/// dtype or layout, sparse gradients) take torch::optim::SGD's own path, so
/// results are the same either way. Given an UpdateStatistics
/// (report_update_statistics), the fused pass also fills the statistics of the
/// parameters it updates.
class SGD : public torch::optim::SGD, public ReportsUpdateStatistics {
 public:
  using torch::optim::SGD::SGD;

  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  detail::StateKeyCache state_key_;
};

}  // namespace bnlab::optim
