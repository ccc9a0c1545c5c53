// CPU kernels of the fused reductions (compiled per CPU capability).
#pragma once

#include "kernels/cpu/dispatch.h"

#include <ATen/core/Tensor.h>

namespace bnlab::kernels::cpu {

/// One contiguous CPU parameter (float or double, all three arrays of the same dtype).
struct ParameterStatsJob {
  const void* param = nullptr;
  const void* grad = nullptr;  ///< nullptr: no gradient
  void* snapshot = nullptr;
  int64_t numel = 0;
  bool is_double = false;
  double* out = nullptr;       ///< param_stat slots
};

/// out[param_stat slots] of every job; updates the snapshots.
using ParameterStatsFn = void (*)(const ParameterStatsJob* jobs, int64_t count);
/// out[0] = Σ t², out[1] = NaN/Inf count, for a dense t.
using SumSquaresFn = void (*)(const at::Tensor& t, double* out);

/// How many threads at::parallel_for spreads `n` single-iteration tasks over
/// in the kernels' own code. at::parallel_for is a header template: with
/// LibTorch's OpenMP backend it runs in parallel only where the caller is
/// compiled with OpenMP, as the kernels are; this tells the tests they still are.
using ParallelWidthFn = int (*)(int64_t n);

extern KernelStub<ParameterStatsFn> parameter_stats_stub;
extern KernelStub<SumSquaresFn> sum_squares_stub;
extern KernelStub<ParallelWidthFn> parallel_width_stub;

}  // namespace bnlab::kernels::cpu
