// CPU kernels of the fused reductions (compiled per CPU capability).
#pragma once

#include "kernels/cpu/dispatch.h"

#include <ATen/core/Tensor.h>

namespace bnlab::kernels::cpu {

/// out[param_stat slots] for contiguous θ, g (or undefined), snapshot; updates the snapshot.
using ParameterStatsFn = void (*)(const at::Tensor& param, const at::Tensor& grad,
                                  const at::Tensor& snapshot, double* out);
/// out[0] = Σ t², out[1] = NaN/Inf count, for a dense t.
using SumSquaresFn = void (*)(const at::Tensor& t, double* out);

extern KernelStub<ParameterStatsFn> parameter_stats_stub;
extern KernelStub<SumSquaresFn> sum_squares_stub;

}  // namespace bnlab::kernels::cpu
