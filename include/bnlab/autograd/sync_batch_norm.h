// bnlab::autograd::SyncBatchNormFunction: training-mode batch normalization
// whose statistics span every rank of a process group, with a hand-written
// forward and backward.
#pragma once

#include <bnlab/distributed/process_group.h>
#include <bnlab/nn/probe.h>

#include <torch/autograd.h>
#include <torch/types.h>

#include <c10/util/Optional.h>

namespace bnlab::autograd {

/// Batch normalization of the global batch: the union of every rank's input
/// (N_r, C, *), ranks holding any N_r ≥ 0 examples. For each channel, rank r
/// has M_r = N_r·∏(spatial) values with local mean μ_r and biased variance σ²_r.
///
/// Forward: every rank all-gathers (M_r, μ_r, σ²_r) and merges them weighted by count
///
///     M = Σ M_r,   μ = Σ M_r·μ_r / M,   σ² = Σ M_r·(σ²_r + (μ_r − μ)²) / M
///
/// (exact for any split; an empty rank contributes nothing). Then, as in
/// BatchNormFunction, r = 1/√(σ² + ε), y = γ·(x − μ)·r + β, and the running
/// statistics are updated with μ and the unbiased σ²·M/(M − 1) — identical on every rank.
/// The merge gathers the variance rather than r: recovering σ² from r would
/// cost digits (σ² = 1/r² − ε) for nothing.
///
/// Backward, with g = ∂L/∂y: every rank all-reduces the per-channel sums
/// S_g = Σ g and S_gx = Σ g·(x − μ) over its local values, then
///
///     ∂L/∂x = γ·r·(g − S_g/M − (x − μ)·r²·S_gx/M)      (global S_g, S_gx, M)
///     ∂L/∂γ = r·Σ_local g·(x − μ),   ∂L/∂β = Σ_local g  (this rank's share:
///                                   data-parallel gradient averaging sums them)
///
/// Every rank must call forward and backward the same number of times (they
/// are collectives). The backward is not differentiable again (create_graph
/// is rejected with an error), as in PyTorch's SyncBatchNorm.
///
/// `probe` (optional) receives the global batch statistics against the
/// running ones, this rank's Σ y² and its gradient sums.
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const c10::optional<torch::Tensor>& weight, const c10::optional<torch::Tensor>& bias,
                               const c10::optional<torch::Tensor>& running_mean,
                               const c10::optional<torch::Tensor>& running_var, double momentum, double eps,
                               const distributed::ProcessGroupPtr& group, const nn::LayerProbe* probe = nullptr);

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs);
};

}  // namespace bnlab::autograd
