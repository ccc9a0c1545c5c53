// CPU kernels of the elementwise activations (compiled per CPU capability).
#pragma once

#include "kernels/activation.h"
#include "kernels/cpu/dispatch.h"

#include <ATen/core/Tensor.h>

namespace bnlab::kernels::cpu {

/// y = f(x) over dense `input`/`output` of the same strides (float32/float64).
/// When `stats` is non-null, also accumulates the forward slots of an
/// nn::activation_stat row (all but the percentiles) using `layout`.
using ActivationForwardFn = void (*)(const at::Tensor& input, const at::Tensor& output,
                                     const ActivationParams& params, const UnitLayout& layout,
                                     double* stats);

/// grad_input = grad_output ⊙ f′(saved), `saved` being x or y per the kind;
/// all three dense with the same strides. With `stats`, also the gradient slots.
using ActivationBackwardFn = void (*)(const at::Tensor& grad_output, const at::Tensor& saved,
                                      const at::Tensor& grad_input, const ActivationParams& params,
                                      double* stats);

extern KernelStub<ActivationForwardFn> activation_forward_stub;
extern KernelStub<ActivationBackwardFn> activation_backward_stub;

}  // namespace bnlab::kernels::cpu
