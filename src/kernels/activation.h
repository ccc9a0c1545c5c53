// Internal building blocks of bnlab's activations: CPU kernels (float32 and
// float64, dispatched per CPU capability) with composite ATen fallbacks for
// other devices and dtypes.
#pragma once

#include "bnlab/autograd/activation.h"

#include <torch/types.h>

namespace bnlab::kernels {

using autograd::ActivationKind;
using autograd::ActivationParams;

/// y = f(x) written into `out` (same shape as x; may be x itself for in-place).
/// When `stats` is defined, also fills the forward slots of an
/// nn::activation_stat row in the same pass over x, and when `sample` is
/// defined copies x (or a strided subset, see sample_plan) into it (copy_input_sample).
void activation_forward(const torch::Tensor& input, const torch::Tensor& out,
                        const ActivationParams& params, const torch::Tensor& stats,
                        const torch::Tensor& sample = {});

/// ∂L/∂x = ∂L/∂y ⊙ f′, with f′ computed from `saved`, which is y when
/// `saved_is_output` and x otherwise. When `stats` is defined, also fills the
/// gradient slots in the same pass.
torch::Tensor activation_backward(const torch::Tensor& grad_output, const torch::Tensor& saved,
                                  bool saved_is_output, const ActivationParams& params,
                                  const torch::Tensor& stats);

/// Whether f′ can be computed from y for these parameters: always for kinds
/// whose derivative comes from y, and for Hardtanh, ReLU and LeakyReLU with a
/// non-negative slope (their "x > bound" tests read the same on y).
bool derivative_available_from_output(const ActivationParams& params);

// ---- composite (differentiable) forms --------------------------------------

/// f(x) from ATen ops.
torch::Tensor activation_composite(const torch::Tensor& input, const ActivationParams& params);

/// f′ from ATen ops of `input` or `output`, whichever is defined and usable
/// (differentiable: used by the create_graph backward and local_derivative()).
torch::Tensor activation_derivative(const torch::Tensor& input, const torch::Tensor& output,
                                    const ActivationParams& params);

/// The saturation rule as a bool tensor shaped like the output.
torch::Tensor activation_saturated(const torch::Tensor& input, const torch::Tensor& output,
                                   const ActivationParams& params);

/// Layout of an activation input for per-unit statistics: element (o, c, s) at
/// flat offset (o·C + c)·inner + s for contiguous tensors, or (o·C + c) with
/// inner = 1 for channels-last ones.
struct UnitLayout {
  int64_t outer = 1;
  int64_t units = 1;
  int64_t inner = 1;
};

/// The unit layout of `t` as stored, if its strides are contiguous or
/// channels-last; otherwise nullopt (the caller makes it contiguous).
c10::optional<UnitLayout> unit_layout(const torch::Tensor& t);

/// Which of n values a sample of `capacity` keeps: all of them when they fit
/// (stride 1), else every stride-th in memory order, the stride being the
/// smallest s ≥ ⌈n/capacity⌉ with gcd(s, period) = 1. `period` is the number
/// of values per example (C times the spatial size, in either memory format),
/// and a stride that shares a factor with it would keep returning to the same
/// few units and positions: at (128, 128), stride 4 kept only every fourth
/// unit; at (32, 64, 56, 56), stride 1568 kept two pixels of each channel. A
/// coprime stride walks through every residue of the period, so the sample
/// spreads over all units and positions (and over the examples).
struct SamplePlan {
  int64_t stride = 1;
  int64_t count = 0;  ///< values kept: ⌈n/stride⌉
};
SamplePlan sample_plan(int64_t n, int64_t capacity, int64_t period);

/// The values per example of `t` for sample_plan: numel / size(0) from two
/// dimensions on, else numel (one example).
int64_t sample_period(const torch::Tensor& t);

/// Copies `input` (the values sample_plan keeps) into the float32 `sample`
/// and records the count in the kSampleCount slot of `stats`.
void copy_input_sample(const torch::Tensor& input, const torch::Tensor& sample,
                       const torch::Tensor& stats);

}  // namespace bnlab::kernels
