// Internal building blocks of batch normalization, shared by BatchNormFunction,
// the fused BatchNormAct and SyncBatchNorm. Every function works on any device
// and floating dtype through composite ATen ops.
//
// Notation (per channel c, over the M values of the channel in an (N, C, *) input):
//   μ mean, σ² biased variance, r = 1/√(σ² + ε) ("invstd"), g = ∂L/∂y.
#pragma once

#include "kernels/cpu/batch_norm_kernel.h"

#include <torch/types.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace bnlab::kernels {

/// The dtype batch statistics (μ, σ², r and their sums) are kept in:
/// float64 for float64 inputs, float32 for float32/half/bfloat16 inputs.
torch::ScalarType stats_dtype(torch::ScalarType input_dtype);

/// M: the number of values each channel of `input` (N, C, *) has.
int64_t values_per_channel(const torch::Tensor& input);

/// Per-channel (μ, σ²) of `input` (N, C, *), σ² biased, in stats_dtype.
/// On CPU, float32 inputs accumulate in float64, as PyTorch does.
std::tuple<torch::Tensor, torch::Tensor> batch_norm_stats(const torch::Tensor& input);

/// r = 1/√(σ² + ε), elementwise, in the dtype of `var`.
torch::Tensor invstd_from_var(const torch::Tensor& var, double eps);

/// In place: running_mean ← (1 − m)·running_mean + m·μ and
/// running_var ← (1 − m)·running_var + m·σ²·M/(M − 1), M = `count`.
void update_running_stats(const torch::Tensor& running_mean, const torch::Tensor& running_var,
                          const torch::Tensor& mean, const torch::Tensor& var, int64_t count,
                          double momentum);

/// y = (x − μ)·r·γ + β for `input` (N, C, *); `weight`/`bias` may be undefined.
/// The output has the input's suggested memory format.
torch::Tensor batch_norm_transform(const torch::Tensor& input, const torch::Tensor& mean,
                                   const torch::Tensor& invstd, const torch::Tensor& weight,
                                   const torch::Tensor& bias);

/// Per-channel (Σ g, Σ g·(x − μ)), in stats_dtype.
std::tuple<torch::Tensor, torch::Tensor> batch_norm_backward_reduce(
    const torch::Tensor& grad_output, const torch::Tensor& input, const torch::Tensor& mean);

/// ∂L/∂x in training mode given the (possibly all-reduced) sums of
/// batch_norm_backward_reduce over `count` values per channel:
///   ∂L/∂x = γ·r·(g − Σg/M − (x − μ)·r²·Σg(x − μ)/M).
torch::Tensor batch_norm_backward_input(const torch::Tensor& grad_output,
                                        const torch::Tensor& input, const torch::Tensor& mean,
                                        const torch::Tensor& invstd, const torch::Tensor& weight,
                                        const torch::Tensor& sum_dy,
                                        const torch::Tensor& sum_dy_xmu, int64_t count);

/// ∂L/∂x in eval mode (constant statistics): ∂L/∂x = γ·r·g.
torch::Tensor batch_norm_backward_input_eval(const torch::Tensor& grad_output,
                                             const torch::Tensor& invstd,
                                             const torch::Tensor& weight);

/// Fills the statistics slots of an nn::batch_norm_stat row: the batch
/// statistics (μ_B, biased σ²_B) against the running ones. Call it before the
/// running statistics are updated. Either pair may be undefined: eval mode has
/// no batch statistics, untracked modules no running ones; those slots become NaN.
/// With `channel_stats` (4·C float64) defined, copies the four per-channel
/// vectors there instead (NaN for an undefined pair) and leaves the averages to
/// the consumer.
void batch_norm_drift_stats(const torch::Tensor& stats, const torch::Tensor& channel_stats,
                            const torch::Tensor& batch_mean,
                            const torch::Tensor& batch_var, const torch::Tensor& running_mean,
                            const torch::Tensor& running_var, double eps, int64_t channels,
                            int64_t count);

/// Copies the four per-channel vectors (μ_B, biased σ²_B, running mean,
/// running var; NaN for an undefined pair) into `channel_stats` (4·C float64),
/// for modules whose probe row is not a batch_norm_stat row (BatchNormAct).
/// Call it before the running statistics are updated. The batch pair comes as
/// tensors, or as the CPU kernels' host vectors of C doubles (null in eval).
void batch_norm_channel_stats(const torch::Tensor& channel_stats, const torch::Tensor& batch_mean,
                              const torch::Tensor& batch_var, const torch::Tensor& running_mean,
                              const torch::Tensor& running_var, int64_t channels);
void batch_norm_channel_stats(const torch::Tensor& channel_stats, const double* batch_mean, const double* batch_var,
                              const torch::Tensor& running_mean, const torch::Tensor& running_var, int64_t channels);

/// Fills Σ y² and the non-finite count of an nn::batch_norm_stat row from the output.
void batch_norm_output_stats(const torch::Tensor& stats, const torch::Tensor& output);

// ---- CPU kernels (float32/float64 on CPU; see cpu/batch_norm_kernel.h) ------

/// Whether the CPU kernels handle this input (with per-channel arguments of
/// its dtype on CPU).
bool cpu_kernels_apply(const torch::Tensor& input);

/// What the CPU forward produces: y, and the statistics it normalized with
/// (μ and r = 1/√(σ² + ε), in stats_dtype) for the backward.
struct CpuForward {
  torch::Tensor output;
  torch::Tensor mean;
  torch::Tensor invstd;
};

/// Training or eval forward on the CPU kernels: one read of the input for the
/// statistics and one for the normalization (channel by channel from cache in
/// the NCHW layout). Updates the running statistics in training (when
/// defined) and fills the probe's slots (`stats`, `channel_stats`) when given.
CpuForward batch_norm_forward_cpu(const torch::Tensor& input, const torch::Tensor& weight,
                                  const torch::Tensor& bias, const torch::Tensor& running_mean,
                                  const torch::Tensor& running_var, bool training, double momentum,
                                  double eps, const torch::Tensor& stats,
                                  const torch::Tensor& channel_stats);

/// Backward on the CPU kernels: (∂L/∂x or undefined, Σ g·x̂ = ∂L/∂γ, Σ g = ∂L/∂β);
/// fills the probe's gradient slots when `stats` is defined.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> batch_norm_backward_cpu(
    const torch::Tensor& grad_output, const torch::Tensor& input, const torch::Tensor& mean,
    const torch::Tensor& invstd, const torch::Tensor& weight, bool training, bool need_input,
    const torch::Tensor& stats);

namespace detail {
/// The CPU kernels' view of `t`: channel-major for contiguous (N, C, inner > 1),
/// channel-minor for (N, C) and channels-last; nullopt otherwise.
c10::optional<cpu::BatchNormLayout> kernel_layout(const torch::Tensor& t);
/// A per-channel vector as doubles (read in place when it is a dense CPU float/double vector).
std::vector<double> to_doubles(const torch::Tensor& t);
/// A new CPU tensor of `dtype` (float32 or float64) holding `v`.
torch::Tensor from_doubles(const std::vector<double>& v, torch::ScalarType dtype);
/// running ← (1 − m)·running + m·value·scale, in double, on a CPU float/double vector.
void blend_into(const torch::Tensor& running, const std::vector<double>& value, double m, double scale);
/// NaN/Inf elements of `t` (the rare path behind a non-finite sum).
double count_nonfinite(const torch::Tensor& t);
/// update_running_stats on CPU vectors from the kernels' double statistics
/// (nothing when running_mean is undefined or count is 0).
void update_running_stats_cpu(const torch::Tensor& running_mean, const torch::Tensor& running_var,
                              const std::vector<double>& mean, const std::vector<double>& var, int64_t count,
                              double momentum);
}  // namespace detail

/// Reshapes a per-channel vector (C) to broadcast against an (N, C, *) tensor of `dim` dims.
torch::Tensor as_channel_view(const torch::Tensor& per_channel, int64_t dim);

/// The dimensions of an (N, C, *) tensor of `dim` dims that statistics reduce over: all but 1.
std::vector<int64_t> reduction_dims(int64_t dim);

}  // namespace bnlab::kernels
