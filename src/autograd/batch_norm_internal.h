// Pieces of BatchNormFunction that the fused BatchNormActFunction shares.
#pragma once

#include <torch/types.h>

#include <c10/util/Optional.h>

#include <cstdint>
#include <tuple>

namespace bnlab::autograd::detail {

/// Bits of the "flags" integer both Functions save for their backward.
constexpr int64_t kTraining = 1;
constexpr int64_t kHasWeight = 2;
constexpr int64_t kHasBias = 4;

/// Checks one per-channel argument (weight, bias, running_mean, running_var):
/// shape (C), the input's dtype and device; messages start with `op`.
void check_per_channel(const char* op, const c10::optional<torch::Tensor>& t, const char* name,
                       const torch::Tensor& input);

/// Every argument check of batch normalization (input (N, C, *) floating,
/// per-channel tensors, running statistics both or neither, eval needs them,
/// training needs more than one value per channel).
void check_batch_norm_arguments(const char* op, const torch::Tensor& input, const c10::optional<torch::Tensor>& weight,
                                const c10::optional<torch::Tensor>& bias,
                                const c10::optional<torch::Tensor>& running_mean,
                                const c10::optional<torch::Tensor>& running_var, bool training);

torch::Tensor value_or_undefined(const c10::optional<torch::Tensor>& t);
bool is_defined(const c10::optional<torch::Tensor>& t);

/// The training-mode gradients (∂L/∂x, ∂L/∂γ, ∂L/∂β) for the upstream
/// gradient `grad_out`, as differentiable tensor ops of the input (the
/// statistics recomputed from it, in float64), for create_graph backwards.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> differentiable_train_backward(const torch::Tensor& grad_out,
                                                                                      const torch::Tensor& input,
                                                                                      const torch::Tensor& weight,
                                                                                      double eps);

}  // namespace bnlab::autograd::detail
