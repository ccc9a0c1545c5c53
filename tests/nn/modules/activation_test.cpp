// bnlab's activation modules: options, saturation rules at their boundaries,
// local derivatives, Maxout, in-place, make_activation.
#include "bnlab/nn/modules/activation.h"

#include "bnlab/nn/make_activation.h"

#include "assert_close.h"
#include "errors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>

namespace {

using bnlab_test::assert_close;
using bnlab_test::error_of;
namespace bn = bnlab::nn;

TEST(ActivationOptions, DefaultsMatchPyTorch) {
  EXPECT_EQ(bn::LeakyReLUOptions().negative_slope(), torch::nn::LeakyReLUOptions().negative_slope());
  EXPECT_EQ(bn::ELUOptions().alpha(), torch::nn::ELUOptions().alpha());
  EXPECT_EQ(bn::HardtanhOptions().min_val(), torch::nn::HardtanhOptions().min_val());
  EXPECT_EQ(bn::HardtanhOptions().max_val(), torch::nn::HardtanhOptions().max_val());
  EXPECT_EQ(bn::ReLUOptions().inplace(), torch::nn::ReLUOptions().inplace());
  EXPECT_EQ(bn::GELUOptions().approximate(), "none");
  EXPECT_EQ(bn::TanhOptions().saturation_threshold(), 0.97);
  EXPECT_EQ(bn::MaxoutOptions(3).pieces(), 3);
}

TEST(ActivationModules, DefaultConstructibleExceptMaxout) {
  bn::Tanh tanh;
  bn::Sigmoid sigmoid;
  bn::Softsign softsign;
  bn::Hardtanh hardtanh;
  bn::ReLU relu;
  bn::LeakyReLU leaky;
  bn::ELU elu;
  bn::GELU gelu;
  bn::SiLU silu;
  static_assert(!std::is_default_constructible_v<bn::MaxoutImpl>);
  auto x = torch::randn({2, 3});
  for (auto* m : std::initializer_list<bn::ActivationLayer*>{
           tanh.get(), sigmoid.get(), softsign.get(), hardtanh.get(), relu.get(), leaky.get(),
           elu.get(), gelu.get(), silu.get()}) {
    EXPECT_EQ(m->saturated(x).sizes(), x.sizes()) << m->activation_name();
  }
}

TEST(ActivationModules, PrettyPrint) {
  auto str = [](const auto& m) {
    std::ostringstream s;
    s << *m;
    return s.str();
  };
  EXPECT_EQ(str(bn::Tanh()), "bnlab::nn::Tanh(saturation_threshold=0.97)");
  EXPECT_EQ(str(bn::LeakyReLU(bn::LeakyReLUOptions().negative_slope(0.2))),
            "bnlab::nn::LeakyReLU(negative_slope=0.2)");
  EXPECT_EQ(str(bn::Hardtanh(bn::HardtanhOptions().min_val(-2))), "bnlab::nn::Hardtanh(min_val=-2, max_val=1)");
  EXPECT_EQ(str(bn::Maxout(3)), "bnlab::nn::Maxout(pieces=3)");
}

// ---- saturation rules, at and around each boundary ----------------------------

// Expected values computed here from the rule's definition in double precision.
void expect_rule(const std::string& name, const bn::ActivationOptions& options,
                 const std::vector<double>& xs, const std::vector<bool>& expected) {
  auto module = bn::make_activation(name, options);
  auto* layer = dynamic_cast<bn::ActivationLayer*>(module.ptr().get());
  ASSERT_NE(layer, nullptr);
  auto sat = layer->saturated(torch::tensor(xs, torch::kDouble));
  ASSERT_EQ(sat.numel(), static_cast<int64_t>(xs.size()));
  for (size_t i = 0; i < xs.size(); ++i) {
    EXPECT_EQ(sat[static_cast<int64_t>(i)].item<bool>(), expected[i]) << name << " at x = " << xs[i];
  }
}

TEST(SaturationRules, TanhAndSoftsignAtAbsYAboveThreshold) {
  const double t = 0.97;
  const double edge = std::atanh(t);  // |tanh x| = t here
  expect_rule("tanh", {}, {0.0, edge * 0.999, -edge * 0.999, edge * 1.001, -edge * 1.001, 50, -50},
              {false, false, false, true, true, true, true});
  const double soft_edge = t / (1 - t);  // x/(1 + x) = t
  expect_rule("softsign", {}, {soft_edge * 0.999, soft_edge * 1.001, -soft_edge * 1.001, 1.0},
              {false, true, true, false});
  // A custom threshold moves the boundary.
  const double e2 = std::atanh(0.5);
  expect_rule("tanh", bn::ActivationOptions().saturation_threshold(0.5), {e2 * 0.99, e2 * 1.01},
              {false, true});
}

TEST(SaturationRules, SigmoidAtAbsTwoYMinusOneAboveThreshold) {
  const double edge = 2 * std::atanh(0.97);  // |2σ(x) − 1| = tanh(x/2) = t
  expect_rule("sigmoid", {}, {0.0, edge * 0.999, edge * 1.001, -edge * 0.999, -edge * 1.001},
              {false, false, true, false, true});
}

TEST(SaturationRules, HardtanhOutsideBoundsOnly) {
  expect_rule("hardtanh", {}, {-1.0, 1.0, -1.0 - 1e-9, 1.0 + 1e-9, 0.0},
              {false, false, true, true, false});
  expect_rule("hardtanh", bn::ActivationOptions().min_val(-2).max_val(0.5), {-2.0, -2.001, 0.5, 0.501},
              {false, true, false, true});
}

TEST(SaturationRules, ReluAtNonPositive) {
  expect_rule("relu", {}, {0.0, -0.0, -1e-30, 1e-30, 2.0}, {true, true, true, false, false});
}

TEST(SaturationRules, EluBelowMinusAlphaT) {
  // y = α(e^x − 1) < −α·t ⇔ x < ln(1 − t)
  for (double alpha : {1.0, 0.7}) {
    const double edge = std::log(1 - 0.97);
    expect_rule("elu", bn::ActivationOptions().alpha(alpha), {edge * 0.999, edge * 1.001, 0.0, 5.0},
                {false, true, false, false});
  }
}

TEST(SaturationRules, GeluAndSiluInTheLeftTailOnly) {
  const double flat = 1 - 0.97 * 0.97;
  // Find the tail boundary independently: bisection on |f′(x)| = 1 − t² for x < 0.
  auto gelu_d = [](double x) {
    return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-x * x / 2) / std::sqrt(2 * M_PI);
  };
  auto silu_d = [](double x) {
    const double s = 1 / (1 + std::exp(-x));
    return s * (1 + x * (1 - s));
  };
  // The tail boundary: bisection on |f′(x)| = 1 − t² between a point far in
  // the tail (|f′| tiny) and one where |f′| is above the flat level.
  auto edge_of = [&](auto d, double hi) {
    double lo = -30;
    for (int i = 0; i < 200; ++i) {
      const double mid = (lo + hi) / 2;
      (std::abs(d(mid)) < flat ? lo : hi) = mid;
    }
    return lo;
  };
  const double ge = edge_of(gelu_d, -1.5);
  expect_rule("gelu", {}, {ge * 0.999, ge * 1.001, 0.0, 3.0, 50.0}, {false, true, false, false, false});
  const double se = edge_of(silu_d, -2.5);
  expect_rule("silu", {}, {se * 0.999, se * 1.001, 0.0, 10.0}, {false, true, false, false});
  // The rule taken literally also flags the flat bottom of the dip, where f′
  // crosses 0 (GELU's minimum at x ≈ −0.7518, SiLU's at x ≈ −1.2785).
  expect_rule("gelu", {}, {-0.7518, -1.5}, {true, false});
  expect_rule("silu", {}, {-1.2785, -2.5}, {true, false});
  // Large positive inputs have f′ → 1: never saturated, however large.
  expect_rule("silu", {}, {-50.0, 50.0}, {true, false});
}

TEST(SaturationRules, LeakyReluAndMaxoutNever) {
  expect_rule("leaky_relu", {}, {-50.0, 0.0, 50.0}, {false, false, false});
  bn::Maxout maxout(2);
  EXPECT_FALSE(maxout->saturated(torch::randn({3, 4}) * 100).any().item<bool>());
  EXPECT_EQ(maxout->saturated(torch::randn({3, 4, 5})).sizes(), (std::vector<int64_t>{3, 2, 5}));
}

// ---- local derivatives ----------------------------------------------------------

TEST(LocalDerivative, MatchesCentralDifferencesOfTheForward) {
  torch::manual_seed(8);
  for (const auto& name : bn::activation_names()) {
    if (name == "maxout") continue;
    auto module = bn::make_activation(name);
    auto* layer = dynamic_cast<bn::ActivationLayer*>(module.ptr().get());
    auto x = torch::randn({200}, torch::kDouble) * 3;
    x = torch::where(x.abs() < 0.01, x + 0.1, x);  // away from kinks
    if (name == "hardtanh") x = torch::where((x.abs() - 1).abs() < 0.01, x * 1.1, x);
    const double h = 1e-6;
    auto fd = (module.forward(x + h) - module.forward(x - h)) / (2 * h);
    EXPECT_TRUE(assert_close(layer->local_derivative(x), fd, {1e-6, 1e-8})) << name;
  }
}

TEST(LocalDerivative, MaximumIsTheLargestValueOnADenseGrid) {
  auto grid = torch::linspace(-20, 20, 400001, torch::kDouble);
  for (const auto& name : bn::activation_names()) {
    if (name == "maxout") continue;
    for (auto options : {bn::ActivationOptions(), bn::ActivationOptions().alpha(2.0).approximate("tanh")}) {
      auto module = bn::make_activation(name, options);
      auto* layer = dynamic_cast<bn::ActivationLayer*>(module.ptr().get());
      const double grid_max = layer->local_derivative(grid).max().item<double>();
      // ELU's supremum α is approached (x → 0⁻), not reached on the grid.
      EXPECT_NEAR(layer->max_local_derivative(), grid_max, name == "elu" ? 1e-3 : 1e-9) << name;
      EXPECT_GE(layer->max_local_derivative(), grid_max - 1e-12) << name;
    }
  }
}

// ---- Maxout ---------------------------------------------------------------------

TEST(Maxout, TakesTheMaxOfConsecutiveChannelsAndRoutesTheGradientToTheWinner) {
  bn::Maxout maxout(2);
  auto x = torch::tensor({{1.0, 3.0, 3.0, 2.0, 5.0, 5.0}}, torch::requires_grad());
  auto y = maxout->forward(x);
  EXPECT_TRUE(torch::equal(y, torch::tensor({{3.0, 3.0, 5.0}})));
  y.backward(torch::tensor({{10.0, 20.0, 30.0}}));
  // Ties go to the first piece, as torch.max does.
  EXPECT_TRUE(torch::equal(x.grad(), torch::tensor({{0.0, 10.0, 20.0, 0.0, 30.0, 0.0}})));
  EXPECT_TRUE(torch::equal(maxout->local_derivative(x.detach()),
                           torch::tensor({{0.0, 1.0, 1.0, 0.0, 1.0, 0.0}})));
}

TEST(Maxout, KeepsSpatialDims) {
  bn::Maxout maxout(3);
  auto x = torch::randn({2, 6, 4, 5});
  auto y = maxout->forward(x);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 2, 4, 5}));
  auto expected = std::get<0>(x.view({2, 2, 3, 4, 5}).max(2));
  EXPECT_TRUE(torch::equal(y, expected));
}

TEST(Maxout, ChannelsNotDivisibleByPiecesIsAClearError) {
  bn::Maxout maxout(3);
  EXPECT_THAT(error_of([&] { maxout->forward(torch::randn({2, 7})); }),
              ::testing::HasSubstr("bnlab::maxout: expected the channel count (dim 1) to be divisible "
                                   "by pieces=3, got 7 channels in input of shape [2, 7]"));
  EXPECT_THAT(error_of([] { bn::Maxout(0); }), ::testing::HasSubstr("expected pieces >= 1, got 0"));
}

// ---- in-place, dtypes, errors ------------------------------------------------------

TEST(ActivationModules, InplaceWritesTheInputAndKeepsGradientsRight) {
  torch::manual_seed(9);
  auto base = torch::randn({4, 5}, torch::requires_grad());
  bn::ReLU relu(bn::ReLUOptions(true));
  auto h = base * 2;  // a non-leaf the in-place op may overwrite
  auto y = relu->forward(h);
  EXPECT_TRUE(y.is_same(h));
  EXPECT_TRUE(torch::equal(h, torch::relu(base.detach() * 2)));
  y.sum().backward();
  EXPECT_TRUE(torch::equal(base.grad(), 2 * (base.detach() > 0).to(torch::kFloat)));
  // A leaf that requires grad cannot be overwritten (autograd's own rule).
  EXPECT_ANY_THROW(relu->forward(base));
  bn::Tanh tanh;
  EXPECT_NO_THROW(tanh->forward(base));
}

TEST(ActivationModules, WorkInSequentialAndInFloat64) {
  torch::nn::Sequential net(torch::nn::Linear(3, 4), bn::Tanh(), torch::nn::Linear(4, 4), bn::Maxout(2));
  net->to(torch::kDouble);
  auto y = net->forward(torch::randn({5, 3}, torch::kDouble));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(y.scalar_type(), torch::kDouble);
}

TEST(ActivationModules, IntegerInputIsAClearError) {
  EXPECT_THAT(error_of([] { bn::Tanh()->forward(torch::ones({2}, torch::kLong)); }),
              ::testing::HasSubstr("bnlab::tanh: expected a floating-point input, got Long"));
}

TEST(ActivationModules, InvalidOptionsAreClearErrors) {
  EXPECT_THAT(error_of([] { bn::Tanh(bn::TanhOptions().saturation_threshold(1.5)); }),
              ::testing::HasSubstr("bnlab::nn::Tanh: expected saturation_threshold in (0, 1), got 1.5"));
  EXPECT_THAT(error_of([] { bn::Hardtanh(bn::HardtanhOptions().min_val(2)); }),
              ::testing::HasSubstr("expected max_val > min_val, got min_val=2, max_val=1"));
  EXPECT_THAT(error_of([] { bn::GELU(bn::GELUOptions().approximate("fast")); }),
              ::testing::HasSubstr("expected approximate \"none\" or \"tanh\", got \"fast\""));
}

TEST(MakeActivation, BuildsEveryNamedModule) {
  for (const auto& name : bn::activation_names()) {
    auto module = bn::make_activation(name);
    auto* layer = dynamic_cast<bn::ActivationLayer*>(module.ptr().get());
    ASSERT_NE(layer, nullptr) << name;
    EXPECT_EQ(layer->activation_name(), name);
    EXPECT_EQ(module.forward(torch::randn({2, 4})).size(0), 2);
  }
  EXPECT_EQ(bn::activation_names().size(), 10U);
}

TEST(MakeActivation, UnknownNameListsTheValidOnes) {
  EXPECT_THAT(error_of([] { bn::make_activation("swish"); }),
              ::testing::HasSubstr("unknown activation \"swish\"; expected one of tanh, sigmoid, softsign, "
                                   "hardtanh, relu, leaky_relu, elu, gelu, silu, maxout"));
}

TEST(MakeActivation, PassesOptions) {
  auto m = bn::make_activation("leaky_relu", bn::ActivationOptions().negative_slope(0.5));
  EXPECT_TRUE(torch::equal(m.forward(torch::tensor({-2.0f, 2.0f})), torch::tensor({-1.0f, 2.0f})));
  auto h = bn::make_activation("hardtanh", bn::ActivationOptions().min_val(-0.5).max_val(0.25));
  EXPECT_TRUE(torch::equal(h.forward(torch::tensor({-2.0f, 2.0f, 0.1f})), torch::tensor({-0.5f, 0.25f, 0.1f})));
}

}  // namespace
