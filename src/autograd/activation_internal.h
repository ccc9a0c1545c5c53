// Pieces of the activation Functions that the fused BatchNormActFunction shares.
#pragma once

#include <bnlab/autograd/activation.h>

#include <torch/autograd.h>

namespace bnlab::autograd::detail {

/// Stores `params` in ctx->saved_data (for the backward).
void save_activation_params(torch::autograd::AutogradContext* ctx, const ActivationParams& params);

/// The parameters save_activation_params stored.
ActivationParams load_activation_params(torch::autograd::AutogradContext* ctx);

/// The probe's activation_stat row (undefined without a probe), after checking
/// it and the probe's sample against `input`; messages start with `op`.
torch::Tensor activation_stats_row(const nn::LayerProbe* probe, const torch::Tensor& input, const char* op);

/// The op name used in error messages ("bnlab::tanh", ...).
const char* activation_op_name(ActivationKind kind);

}  // namespace bnlab::autograd::detail
