// Builds bnlab activation modules by name (for command lines and configs).
#pragma once

#include <bnlab/autograd/activation.h>

#include <torch/arg.h>
#include <torch/nn/modules/container/any.h>

#include <cstdint>
#include <string>
#include <vector>

namespace bnlab::nn {

/// The union of every activation's options; each activation reads its own
/// fields and ignores the rest. Defaults are PyTorch's.
struct ActivationOptions {
  TORCH_ARG(double, saturation_threshold) = autograd::kDefaultSaturationThreshold;
  TORCH_ARG(double, min_val) = -1.0;          ///< hardtanh
  TORCH_ARG(double, max_val) = 1.0;           ///< hardtanh
  TORCH_ARG(double, negative_slope) = 1e-2;   ///< leaky_relu
  TORCH_ARG(double, alpha) = 1.0;             ///< elu
  TORCH_ARG(std::string, approximate) = "none";  ///< gelu
  TORCH_ARG(int64_t, pieces) = 2;             ///< maxout
};

/// The names make_activation() accepts, in a fixed order.
const std::vector<std::string>& activation_names();

/// The module for `name` ("tanh", "sigmoid", "softsign", "hardtanh", "relu",
/// "leaky_relu", "elu", "gelu", "silu", "maxout"); throws, listing the valid
/// names, for any other.
torch::nn::AnyModule make_activation(const std::string& name, const ActivationOptions& options = {});

}  // namespace bnlab::nn
