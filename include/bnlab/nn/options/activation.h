// Options of bnlab's activation modules: PyTorch's field names and defaults,
// plus the threshold of each module's saturation rule.
#pragma once

#include <bnlab/autograd/activation.h>

#include <torch/arg.h>

#include <cstdint>
#include <string>

namespace bnlab::nn {

using autograd::kDefaultSaturationThreshold;

/// Options for bnlab::nn::Tanh. Saturated where |y| > saturation_threshold.
struct TanhOptions {
  TORCH_ARG(double, saturation_threshold) = kDefaultSaturationThreshold;
};

/// Options for bnlab::nn::Sigmoid. Saturated where |2y − 1| > saturation_threshold.
struct SigmoidOptions {
  TORCH_ARG(double, saturation_threshold) = kDefaultSaturationThreshold;
};

/// Options for bnlab::nn::Softsign. Saturated where |y| > saturation_threshold.
struct SoftsignOptions {
  TORCH_ARG(double, saturation_threshold) = kDefaultSaturationThreshold;
};

/// Options for bnlab::nn::Hardtanh. Saturated where x < min_val or x > max_val.
struct HardtanhOptions {
  /// Lower bound of the linear region.
  TORCH_ARG(double, min_val) = -1.0;
  /// Upper bound of the linear region.
  TORCH_ARG(double, max_val) = 1.0;
  /// Write the output into the input.
  TORCH_ARG(bool, inplace) = false;
  /// Unused by Hardtanh's rule (its gradient is exactly 0 outside the bounds);
  /// kept so every activation takes the same options.
  TORCH_ARG(double, saturation_threshold) = kDefaultSaturationThreshold;
};

/// Options for bnlab::nn::ReLU. Saturated where x ≤ 0.
struct ReLUOptions {
  /* implicit */ ReLUOptions(bool inplace = false) : inplace_(inplace) {}
  /// Write the output into the input.
  TORCH_ARG(bool, inplace);
  /// Unused by ReLU's rule; kept for uniformity.
  TORCH_ARG(double, saturation_threshold) = kDefaultSaturationThreshold;
};

/// Options for bnlab::nn::LeakyReLU. Never saturated.
struct LeakyReLUOptions {
  /// Slope for x < 0.
  TORCH_ARG(double, negative_slope) = 1e-2;
  /// Write the output into the input (needs negative_slope >= 0).
  TORCH_ARG(bool, inplace) = false;
  TORCH_ARG(double, saturation_threshold) = kDefaultSaturationThreshold;
};

/// Options for bnlab::nn::ELU. Saturated where y < −alpha·saturation_threshold.
struct ELUOptions {
  /// The value −alpha that ELU approaches as x → −∞.
  TORCH_ARG(double, alpha) = 1.0;
  /// Write the output into the input.
  TORCH_ARG(bool, inplace) = false;
  TORCH_ARG(double, saturation_threshold) = kDefaultSaturationThreshold;
};

/// Options for bnlab::nn::GELU. Saturated where x < 0 and |f′(x)| < 1 − t².
struct GELUOptions {
  /// "none" (exact, x·Φ(x); PyTorch's default) or "tanh" (the tanh approximation).
  TORCH_ARG(std::string, approximate) = "none";
  TORCH_ARG(double, saturation_threshold) = kDefaultSaturationThreshold;
};

/// Options for bnlab::nn::SiLU. Saturated where x < 0 and |f′(x)| < 1 − t².
struct SiLUOptions {
  TORCH_ARG(double, saturation_threshold) = kDefaultSaturationThreshold;
};

/// Options for bnlab::nn::Maxout. Never saturated.
struct MaxoutOptions {
  /* implicit */ MaxoutOptions(int64_t pieces) : pieces_(pieces) {}
  /// k: the number of consecutive channels each output channel takes the max of.
  TORCH_ARG(int64_t, pieces);
  TORCH_ARG(double, saturation_threshold) = kDefaultSaturationThreshold;
};

}  // namespace bnlab::nn
