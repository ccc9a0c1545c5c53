// The parameters, buffers and running-statistics bookkeeping that every bnlab
// module with BatchNorm semantics shares (BatchNorm{1,2,3}d, BatchNormAct),
// laid out exactly as torch::nn::BatchNorm's so state dicts interchange.
#pragma once

#include <bnlab/nn/options/batch_norm.h>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <string>

namespace bnlab::nn::detail {

/// References to a module's BatchNorm tensors (its public members).
struct BatchNormTensors {
  torch::Tensor& weight;
  torch::Tensor& bias;
  torch::Tensor& running_mean;
  torch::Tensor& running_var;
  torch::Tensor& num_batches_tracked;
};

/// Registers `weight`, `bias` (parameters) and `running_mean`, `running_var`,
/// `num_batches_tracked` (buffers) on `module`; every name is registered
/// whatever the options (undefined when switched off), as torch::nn does.
/// Then initializes them (reset_parameters).
void register_batch_norm_tensors(torch::nn::Module& module, const BatchNormOptions& options,
                                 const BatchNormTensors& t);

/// running_mean ← 0, running_var ← 1, num_batches_tracked ← 0 (when tracked).
void reset_running_stats(const BatchNormOptions& options, const BatchNormTensors& t);

/// reset_running_stats, then weight ← 1 and bias ← 0 (when affine).
void reset_parameters(const BatchNormOptions& options, const BatchNormTensors& t);

/// Whether a forward in this mode counts as a batch: training with running statistics.
bool counts_batches(bool training, const BatchNormOptions& options, const torch::Tensor& num_batches_tracked);

/// The momentum for this forward: the option, or 1/(batches seen including
/// this one) — the cumulative average — when it is nullopt.
double exponential_average_factor(bool training, const BatchNormOptions& options,
                                  const torch::Tensor& num_batches_tracked);

/// "eps=1e-05, momentum=0.1, affine=true, track_running_stats=true", as torch prints them.
std::string options_string(const BatchNormOptions& options);

/// Restores num_batches_tracked to int64 after a dtype conversion.
void keep_counter_integral(torch::Tensor& num_batches_tracked);

}  // namespace bnlab::nn::detail
