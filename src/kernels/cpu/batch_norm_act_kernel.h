// bnlab's fused BatchNorm + activation CPU kernels (compiled per CPU capability).
//
// Notation (per channel c): μ mean, r = 1/√(σ² + ε), γ weight, β bias,
// z = (x − μ)·γr + β the BatchNorm output (never stored), y = f(z),
// g = ∂L/∂y, dz = g·f′(z) = ∂L/∂z.
#pragma once

#include "kernels/activation.h"
#include "kernels/cpu/batch_norm_kernel.h"
#include "kernels/cpu/dispatch.h"

#include <ATen/core/Tensor.h>

namespace bnlab::kernels::cpu {

struct BatchNormActForwardArgs {
  bool training = true;
  double eps = 1e-5;
  at::Tensor weight;  ///< γ (float32/float64 of x's dtype) or undefined (γ = 1)
  at::Tensor bias;    ///< β or undefined (β = 0)
  /// Training: outputs (μ, biased σ², r). Eval: `mean` and `invstd` are inputs
  /// (the running statistics) and `var` is unused.
  double* mean = nullptr;
  double* var = nullptr;
  double* invstd = nullptr;
  /// Non-null: the forward slots of an nn::activation_stat row, with z as the
  /// activation's input and the channels as its units.
  double* act_stats = nullptr;
};

/// Training forward: the channel statistics (one read, as in the BatchNorm
/// kernels), then y = f(z) in one pass; eval: that pass only.
using BatchNormActForwardFn = void (*)(const at::Tensor& x, const at::Tensor& y, const BatchNormLayout& layout,
                                       const ActivationParams& params, const BatchNormActForwardArgs& args);

struct BatchNormActBackwardArgs {
  const double* mean = nullptr;
  const double* invstd = nullptr;
  const double* weight = nullptr;  ///< nullptr: γ = 1
  const double* bias = nullptr;    ///< nullptr: β = 0
  double count = 0;                ///< M, the values per channel
  bool eval = false;
  double* sum_dz = nullptr;      ///< out: Σ dz per channel (= ∂L/∂β)
  double* sum_dz_xmu = nullptr;  ///< out: Σ dz·(x − μ) per channel (· r = ∂L/∂γ)
  /// Non-null: the gradient slots of the activation_stat row: Σ g², Σ dz², non-finite dz.
  double* act_stats = nullptr;
};

/// Backward: a first pass computes dz (f′ from y when the activation allows,
/// else from z recomputed from x) and the two channel sums, keeping dz in a
/// per-thread cache-sized buffer where the layout allows; the second writes
///   dx = γr·(dz − Σdz/M − (x − μ)·r²·Σdz(x − μ)/M)   (training),
///   dx = γr·dz                                      (eval: in the first pass).
/// `y` may be undefined when f′ is computed from z; `dx` may be undefined.
using BatchNormActBackwardFn = void (*)(const at::Tensor& g, const at::Tensor& x, const at::Tensor& y,
                                        const at::Tensor& dx, const BatchNormLayout& layout,
                                        const ActivationParams& params, const BatchNormActBackwardArgs& args);

extern KernelStub<BatchNormActForwardFn> batch_norm_act_forward_stub;
extern KernelStub<BatchNormActBackwardFn> batch_norm_act_backward_stub;

}  // namespace bnlab::kernels::cpu
