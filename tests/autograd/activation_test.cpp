// Finite-difference checks of every activation's first and second derivatives (float64).
#include "bnlab/nn/make_activation.h"

#include "gradcheck.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using torch::autograd::variable_list;

// Inputs at least 0.05 away from every kink (0 for the ReLU family, the
// Hardtanh bounds, ties between Maxout pieces), where f is smooth.
torch::Tensor smooth_input(const std::string& name, std::vector<int64_t> shape) {
  auto x = torch::randn(shape, torch::kDouble) * 2;
  auto away = [](const torch::Tensor& t, double kink) {
    auto d = t - kink;
    return torch::where(d.abs() < 0.05, kink + 0.05 * d.sign() + 0.05 * (d == 0), t);
  };
  x = away(x, 0.0);
  if (name == "hardtanh") x = away(away(x, -1.0), 1.0);
  if (name == "maxout") {
    // Distinct pieces: spread the values of each pair apart.
    x = x + torch::arange(x.numel(), torch::kDouble).reshape(shape) * 0.1;
  }
  return x;
}

class ActivationGradcheck : public ::testing::TestWithParam<std::string> {
 protected:
  bnlab_test::DifferentiableFn fn() const {
    auto module = bnlab::nn::make_activation(GetParam());
    return [module](const variable_list& in) mutable -> variable_list {
      return {module.forward(in[0])};
    };
  }
  std::vector<int64_t> shape() const { return {3, 4, 2}; }
};

TEST_P(ActivationGradcheck, FirstDerivatives) {
  torch::manual_seed(5);
  EXPECT_TRUE(bnlab_test::gradcheck(fn(), {smooth_input(GetParam(), shape()).requires_grad_(true)}));
}

TEST_P(ActivationGradcheck, SecondDerivatives) {
  torch::manual_seed(6);
  EXPECT_TRUE(bnlab_test::gradgradcheck(fn(), {smooth_input(GetParam(), shape()).requires_grad_(true)}));
}

INSTANTIATE_TEST_SUITE_P(Activations, ActivationGradcheck,
                         ::testing::ValuesIn(bnlab::nn::activation_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(ActivationGradcheck, GeluTanhApproximation) {
  torch::manual_seed(7);
  auto module = bnlab::nn::make_activation("gelu", bnlab::nn::ActivationOptions().approximate("tanh"));
  bnlab_test::DifferentiableFn f = [module](const variable_list& in) mutable -> variable_list {
    return {module.forward(in[0])};
  };
  auto x = (torch::randn({5, 3}, torch::kDouble) * 2).requires_grad_(true);
  EXPECT_TRUE(bnlab_test::gradcheck(f, {x}));
  EXPECT_TRUE(bnlab_test::gradgradcheck(f, {x}));
}

}  // namespace
