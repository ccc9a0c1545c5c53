// Uses an installed bnlab exactly as it would use torch::nn::BatchNorm*d, and
// checks it against PyTorch on cases drawn afresh for this run.
#include <bnlab/bnlab.h>

#include "assert_close.h"
#include "reference_data.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

namespace {

using nlohmann::json;

const bnlab_test::ReferenceData& reference() {
  static const auto data = bnlab_test::ReferenceData::load(bnlab_test::reference_dir(), "batch_norm");
  return data;
}

// Written once against the torch::nn::BatchNorm*d interface; instantiated with
// bnlab's modules (the drop-in under test) and torch's own (a control that the
// harness reads the reference right).
template <typename Module, typename Options>
void check_against_pytorch(int dim) {
  const auto& ref = reference();
  int checked = 0;
  for (const auto& c : ref.meta().at("cases")) {
    if (c.at("dim").get<int>() != dim) continue;
    SCOPED_TRACE(c.at("name").get<std::string>());
    ++checked;
    const auto dtype = bnlab_test::dtype_from_name(c.at("dtype").get<std::string>());
    const auto tol = bnlab_test::default_tolerance(dtype);
    Options options(c.at("num_features").get<int64_t>());
    options.eps(c.at("eps").get<double>())
        .affine(c.at("affine").get<bool>())
        .track_running_stats(c.at("track_running_stats").get<bool>())
        .momentum(c.at("momentum").is_null() ? c10::optional<double>()
                                             : c10::optional<double>(c.at("momentum").get<double>()));
    Module bn(options);
    bn->to(dtype);
    {
      torch::NoGradGuard no_grad;
      auto params = bn->named_parameters();  // find() points into these dicts
      auto buffers = bn->named_buffers();
      for (const auto& [key, desc] : c.at("init").items()) {
        auto* p = params.find(key);
        if (p == nullptr) p = buffers.find(key);
        ASSERT_NE(p, nullptr) << key;
        p->copy_(ref.tensor(desc));
      }
    }
    const auto layout = c.at("layout").get<std::string>();
    // PyTorch's float64 evaluation of a float32 step (see bnlab's README).
    auto exact = [&](const json& step, const char* key) {
      return step.contains("exact") && step.at("exact").contains(key)
                 ? ref.tensor(step.at("exact").at(key))
                 : torch::Tensor();
    };
    auto check = [&](const torch::Tensor& actual, const json& step, const char* key) {
      EXPECT_TRUE(bnlab_test::assert_close_to_pytorch(actual, ref.tensor(step.at(key)), exact(step, key),
                                                      tol, nullptr, key));
    };
    for (const auto& step : c.at("steps")) {
      bn->train(step.at("mode") == "train");
      auto x = bnlab_test::with_layout(ref.tensor(step.at("x")), layout).requires_grad_(true);
      auto gy = bnlab_test::with_layout(ref.tensor(step.at("grad_y")), layout);
      bn->zero_grad();
      auto y = bn->forward(x);
      y.backward(gy);
      check(y, step, "y");
      check(x.grad(), step, "grad_x");
      if (bn->weight.defined()) {
        check(bn->weight.grad(), step, "grad_weight");
        check(bn->bias.grad(), step, "grad_bias");
      }
      if (bn->running_mean.defined()) {
        check(bn->running_mean, step, "running_mean");
        check(bn->running_var, step, "running_var");
        EXPECT_EQ(bn->num_batches_tracked.template item<int64_t>(),
                  step.at("num_batches_tracked").get<int64_t>());
      }
    }
  }
  EXPECT_GT(checked, 0);
}

TEST(InstalledBnlab, BatchNorm1dMatchesPyTorch) {
  check_against_pytorch<bnlab::nn::BatchNorm1d, bnlab::nn::BatchNorm1dOptions>(1);
}
TEST(InstalledBnlab, BatchNorm2dMatchesPyTorch) {
  check_against_pytorch<bnlab::nn::BatchNorm2d, bnlab::nn::BatchNorm2dOptions>(2);
}
TEST(InstalledBnlab, BatchNorm3dMatchesPyTorch) {
  check_against_pytorch<bnlab::nn::BatchNorm3d, bnlab::nn::BatchNorm3dOptions>(3);
}
TEST(HarnessControl, TorchBatchNorm2dMatchesPyTorch) {
  check_against_pytorch<torch::nn::BatchNorm2d, torch::nn::BatchNorm2dOptions>(2);
}

TEST(InstalledBnlab, EveryActivationMatchesPyTorch) {
  static const auto ref = bnlab_test::ReferenceData::load(bnlab_test::reference_dir(), "activation");
  std::set<std::string> seen;
  for (const auto& c : ref.meta().at("cases")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto name = c.at("activation").get<std::string>();
    seen.insert(name);
    const auto& o = c.at("options");
    bnlab::nn::ActivationOptions options;
    if (o.contains("min_val")) options.min_val(o.at("min_val").get<double>());
    if (o.contains("max_val")) options.max_val(o.at("max_val").get<double>());
    if (o.contains("negative_slope")) options.negative_slope(o.at("negative_slope").get<double>());
    if (o.contains("alpha")) options.alpha(o.at("alpha").get<double>());
    if (o.contains("approximate")) options.approximate(o.at("approximate").get<std::string>());
    if (o.contains("pieces")) options.pieces(o.at("pieces").get<int64_t>());
    auto module = bnlab::nn::make_activation(name, options);
    const auto tol = bnlab_test::default_tolerance(bnlab_test::dtype_from_name(c.at("dtype").get<std::string>()));
    auto check = [&](const torch::Tensor& actual, const char* key) {
      auto exact = c.contains("exact") ? ref.tensor(c.at("exact").at(key)) : torch::Tensor();
      EXPECT_TRUE(bnlab_test::assert_close_to_pytorch(actual, ref.tensor(c.at(key)), exact, tol, nullptr, key));
    };
    auto x = bnlab_test::with_layout(ref.tensor(c.at("x")), c.at("layout").get<std::string>())
                 .requires_grad_(true);
    auto y = module.forward(x);
    y.backward(ref.tensor(c.at("grad_y")));
    check(y, "y");
    check(x.grad(), "grad_x");
  }
  EXPECT_EQ(seen.size(), bnlab::nn::activation_names().size());
}

TEST(InstalledBnlab, HeaderVersionMatchesThePackageFound) {
  EXPECT_STREQ(BNLAB_VERSION_STRING, BNLAB_PACKAGE_VERSION);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::printf("PyTorch reference seed %lld (fresh cases for this run)\n",
              static_cast<long long>(reference().meta().at("seed").get<int64_t>()));
  std::fflush(stdout);
  return RUN_ALL_TESTS();
}
