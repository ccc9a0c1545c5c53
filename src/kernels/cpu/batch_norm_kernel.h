// bnlab's CPU batch-norm kernels (compiled per CPU capability).
//
// Two layouts:
//  - channel-major: contiguous (N, C, inner) with inner > 1 — channel c is N
//    runs of `inner` contiguous values; processed channel by channel, so a
//    channel's data is read from memory once and re-read from cache;
//  - channel-minor: rows of C values — (N, C) inputs and channels-last ones,
//    rows = N·∏spatial; processed in blocks of rows with per-channel vectors.
#pragma once

#include "kernels/cpu/dispatch.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace bnlab::kernels::cpu {

struct BatchNormLayout {
  int64_t outer = 1;     ///< N (channel-major) or rows (channel-minor)
  int64_t channels = 1;  ///< C
  int64_t inner = 1;     ///< contiguous run per (n, c) (channel-major); 1 for channel-minor
  bool channel_minor = false;
};

/// Training forward: per-channel mean and biased variance of x (accurate as a
/// two-pass computation: each chunk is centered on its own mean while in
/// cache, chunks merged with Chan's formula in double), then
/// y = (x − μ)·r·γ + β with r = 1/√(σ² + ε). `weight`/`bias` may be undefined.
/// Writes mean[C], var[C]; with `sum_y2` non-null, also Σ y².
using BatchNormForwardTrainFn = void (*)(const at::Tensor& x, const at::Tensor& y, const BatchNormLayout& layout,
                                         const at::Tensor& weight, const at::Tensor& bias, double eps,
                                         double* mean, double* var, double* sum_y2);

/// y = (x − mean[c])·scale[c] + shift[c]; with `sum_y2` non-null, also Σ y².
using BatchNormTransformFn = void (*)(const at::Tensor& x, const at::Tensor& y, const BatchNormLayout& layout,
                                      const double* mean, const double* scale, const double* shift,
                                      double* sum_y2);

/// Per-channel mean and biased variance only (SyncBatchNorm's local statistics).
using BatchNormStatsFn = void (*)(const at::Tensor& x, const BatchNormLayout& layout, double* mean, double* var);

/// Backward. With `eval` false (training): sum_dy[c] = Σ g, sum_dy_xmu[c] =
/// Σ g·(x − mean[c]) in a first pass, then, when dx is defined,
/// dx = g·a − (x − μ)·b − c with a = γ·r, b = a·r²·sum_dy_xmu/M, c = a·sum_dy/M,
/// M = `count` (the global count: SyncBatchNorm passes all-reduced sums through
/// `reduced` instead of reducing locally). With `eval` true: one pass,
/// dx = g·γ·r and the same sums. `sum_g2`/`sum_dx2`, when non-null, get Σ g² and Σ dx².
struct BatchNormBackwardArgs {
  const double* mean = nullptr;
  const double* invstd = nullptr;
  const double* weight = nullptr;  ///< nullptr: γ = 1
  double count = 0;
  bool eval = false;
  const double* reduced_sum_dy = nullptr;      ///< non-null: skip the reduction, use these sums
  const double* reduced_sum_dy_xmu = nullptr;
  double* sum_dy = nullptr;        ///< out (may be nullptr when reduced_* given)
  double* sum_dy_xmu = nullptr;    ///< out
  double* sum_g2 = nullptr;
  double* sum_dx2 = nullptr;
};
using BatchNormBackwardFn = void (*)(const at::Tensor& g, const at::Tensor& x, const at::Tensor& dx,
                                     const BatchNormLayout& layout, const BatchNormBackwardArgs& args);

extern KernelStub<BatchNormForwardTrainFn> batch_norm_forward_train_stub;
extern KernelStub<BatchNormTransformFn> batch_norm_transform_stub;
extern KernelStub<BatchNormStatsFn> batch_norm_stats_stub;
extern KernelStub<BatchNormBackwardFn> batch_norm_backward_stub;

}  // namespace bnlab::kernels::cpu
