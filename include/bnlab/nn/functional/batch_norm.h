// bnlab::functional::batch_norm: the stateless batch normalization op.
#pragma once

#include <bnlab/nn/options/batch_norm.h>

#include <torch/types.h>

#include <c10/util/Optional.h>

namespace bnlab::functional {

/// Batch normalization with bnlab's hand-written forward and backward
/// (`bnlab::autograd::BatchNormFunction`); the same argument order and meaning
/// as `torch::nn::functional::detail::batch_norm`.
///
/// `input` is (N, C, *); `running_mean`/`running_var` are (C) or undefined and
/// are updated in place when `training`; `weight`/`bias` are (C) or undefined.
/// `momentum` is the weight of the batch in the running update; a cumulative
/// average (momentum = nullopt in the modules) is resolved by the module, which
/// owns num_batches_tracked, so here nullopt is only accepted when no running
/// statistics are updated.
torch::Tensor batch_norm(const torch::Tensor& input, const torch::Tensor& running_mean,
                         const torch::Tensor& running_var, torch::Tensor weight,
                         torch::Tensor bias, bool training, c10::optional<double> momentum,
                         double eps);

/// Same as above with the options of `torch::nn::functional::batch_norm`.
torch::Tensor batch_norm(const torch::Tensor& input, const torch::Tensor& running_mean,
                         const torch::Tensor& running_var,
                         const BatchNormFuncOptions& options = {});

}  // namespace bnlab::functional
