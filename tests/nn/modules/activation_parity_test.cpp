// bnlab's activations against real PyTorch (reference produced during the test
// run by tests/reference/activation_reference.py): forward, backward (plain and
// create_graph) and double backward, float32 and float64, extreme inputs.
#include "bnlab/nn/make_activation.h"

#include "assert_close.h"
#include "reference_data.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

namespace {

using bnlab_test::assert_close_to_pytorch;
using nlohmann::json;

const bnlab_test::ReferenceData& reference() {
  static const auto data = bnlab_test::ReferenceData::load(bnlab_test::reference_dir(), "activation");
  return data;
}

bnlab::nn::ActivationOptions options_from(const json& o) {
  bnlab::nn::ActivationOptions options;
  if (o.contains("min_val")) options.min_val(o.at("min_val").get<double>());
  if (o.contains("max_val")) options.max_val(o.at("max_val").get<double>());
  if (o.contains("negative_slope")) options.negative_slope(o.at("negative_slope").get<double>());
  if (o.contains("alpha")) options.alpha(o.at("alpha").get<double>());
  if (o.contains("approximate")) options.approximate(o.at("approximate").get<std::string>());
  if (o.contains("pieces")) options.pieces(o.at("pieces").get<int64_t>());
  return options;
}

torch::Tensor or_zeros(const torch::Tensor& g, const torch::Tensor& like) {
  return g.defined() ? g : torch::zeros_like(like);
}

class ActivationParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ActivationParity, ForwardBackwardDoubleBackwardMatchPyTorch) {
  const auto& ref = reference();
  bnlab_test::ErrorStats stats32;
  bnlab_test::ErrorStats stats64;
  int cases = 0;
  for (const auto& c : ref.meta().at("cases")) {
    if (c.at("activation") != GetParam()) continue;
    ++cases;
    const std::string name = c.at("name").get<std::string>();
    SCOPED_TRACE(name);
    const auto dtype = bnlab_test::dtype_from_name(c.at("dtype").get<std::string>());
    const auto tol = bnlab_test::default_tolerance(dtype);
    auto* stats = dtype == torch::kFloat ? &stats32 : &stats64;
    auto module = bnlab::nn::make_activation(GetParam(), options_from(c.at("options")));
    auto x = bnlab_test::with_layout(ref.tensor(c.at("x")), c.at("layout").get<std::string>())
                 .requires_grad_(true);
    auto gy = ref.tensor(c.at("grad_y")).requires_grad_(true);
    // PyTorch's result, and for float32 its float64 evaluation of the same inputs.
    auto check = [&](const torch::Tensor& actual, const char* key, const std::string& label) {
      auto exact = c.contains("exact") ? ref.tensor(c.at("exact").at(key)) : torch::Tensor();
      EXPECT_TRUE(assert_close_to_pytorch(actual, ref.tensor(c.at(key)), exact, tol, stats,
                                          name + " " + label));
    };
    auto y = module.forward(x);
    check(y, "y", "y");
    auto plain = torch::autograd::grad({y}, {x}, {gy}, /*retain_graph=*/true)[0];
    check(plain, "grad_x", "grad_x");
    auto gx = torch::autograd::grad({y}, {x}, {gy}, /*retain_graph=*/true, /*create_graph=*/true)[0];
    check(gx, "grad_x", "grad_x (create_graph)");
    auto s = (gx * ref.tensor(c.at("v"))).sum();
    torch::Tensor g2x;
    torch::Tensor g2gy;
    if (s.requires_grad()) {
      auto second = torch::autograd::grad({s}, {x, gy}, {}, false, false, /*allow_unused=*/true);
      g2x = second[0];
      g2gy = second[1];
    }
    check(or_zeros(g2x, x), "grad2_x", "grad2_x");
    check(or_zeros(g2gy, gy), "grad2_grad_y", "grad2_grad_y");
  }
  EXPECT_GT(cases, 0);
  spdlog::info("{} parity: {} cases; float32 worst |diff| {:.3g} (ratio {:.3g} at {}), {} elements "
               "off PyTorch but closer to its float64 result; float64 worst |diff| {:.3g} (ratio {:.3g})",
               GetParam(), cases, stats32.max_abs, stats32.max_ratio, stats32.where,
               stats32.closer_than_pytorch, stats64.max_abs, stats64.max_ratio);
}

INSTANTIATE_TEST_SUITE_P(Activations, ActivationParity,
                         ::testing::ValuesIn(bnlab::nn::activation_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
