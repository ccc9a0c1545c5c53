#include "bnlab/nn/make_activation.h"

#include "bnlab/nn/modules/activation.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace bnlab::nn {

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names{"tanh", "sigmoid", "softsign", "hardtanh", "relu",
                                              "leaky_relu", "elu", "gelu", "silu", "maxout"};
  return names;
}

torch::nn::AnyModule make_activation(const std::string& name, const ActivationOptions& o) {
  const double t = o.saturation_threshold();
  if (name == "tanh") return torch::nn::AnyModule(Tanh(TanhOptions().saturation_threshold(t)));
  if (name == "sigmoid") return torch::nn::AnyModule(Sigmoid(SigmoidOptions().saturation_threshold(t)));
  if (name == "softsign") return torch::nn::AnyModule(Softsign(SoftsignOptions().saturation_threshold(t)));
  if (name == "hardtanh") {
    return torch::nn::AnyModule(
        Hardtanh(HardtanhOptions().min_val(o.min_val()).max_val(o.max_val()).saturation_threshold(t)));
  }
  if (name == "relu") return torch::nn::AnyModule(ReLU(ReLUOptions().saturation_threshold(t)));
  if (name == "leaky_relu") {
    return torch::nn::AnyModule(
        LeakyReLU(LeakyReLUOptions().negative_slope(o.negative_slope()).saturation_threshold(t)));
  }
  if (name == "elu") return torch::nn::AnyModule(ELU(ELUOptions().alpha(o.alpha()).saturation_threshold(t)));
  if (name == "gelu") {
    return torch::nn::AnyModule(GELU(GELUOptions().approximate(o.approximate()).saturation_threshold(t)));
  }
  if (name == "silu") return torch::nn::AnyModule(SiLU(SiLUOptions().saturation_threshold(t)));
  if (name == "maxout") return torch::nn::AnyModule(Maxout(MaxoutOptions(o.pieces()).saturation_threshold(t)));
  TORCH_CHECK(false, "bnlab::nn::make_activation: unknown activation \"", name, "\"; expected one of ",
              fmt::format("{}", fmt::join(activation_names(), ", ")));
}

}  // namespace bnlab::nn
