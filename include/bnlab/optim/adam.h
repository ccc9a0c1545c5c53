// bnlab::optim::Adam and AdamW: torch::optim's, with a fused, one-pass step.
#pragma once

#include <bnlab/optim/state_key_cache.h>
#include <bnlab/optim/update_statistics.h>

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

namespace bnlab::optim {

/// A drop-in torch::optim::Adam (the same AdamOptions, parameter groups, state
/// and serialization) whose step updates each contiguous CPU float/double
/// parameter in one pass over θ, its gradient and its moments, in the order of
/// torch::optim::Adam's ops:
///
///     g ← g + λθ;  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²  (v̂ ← max(v̂, v) with AMSGrad);
///     θ ← θ − η/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
///
/// torch::optim::Adam spends about ten tensor ops (and their temporaries) per
/// parameter per step. Other devices, dtypes and layouts take torch's own ops.
/// Given an UpdateStatistics (report_update_statistics), the fused pass also
/// fills the statistics of the parameters it updates.
class Adam : public torch::optim::Adam, public ReportsUpdateStatistics {
 public:
  using torch::optim::Adam::Adam;

  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  detail::StateKeyCache state_key_;
};

/// A drop-in torch::optim::AdamW: Adam with decoupled weight decay
/// (θ ← θ·(1 − ηλ) before the update instead of λθ in the gradient), fused
/// like bnlab::optim::Adam.
class AdamW : public torch::optim::AdamW, public ReportsUpdateStatistics {
 public:
  using torch::optim::AdamW::AdamW;

  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  detail::StateKeyCache state_key_;
};

}  // namespace bnlab::optim
