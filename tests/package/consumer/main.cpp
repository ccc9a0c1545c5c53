// Uses an installed bnlab exactly as it would use torch::nn::BatchNorm*d, and
// checks it against PyTorch on cases drawn afresh for this run.
#include <bnlab/bnlab.h>

#include "assert_close.h"
#include "reference_data.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

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
    for (const auto& step : c.at("steps")) {
      bn->train(step.at("mode") == "train");
      auto x = bnlab_test::with_layout(ref.tensor(step.at("x")), layout).requires_grad_(true);
      auto gy = bnlab_test::with_layout(ref.tensor(step.at("grad_y")), layout);
      bn->zero_grad();
      auto y = bn->forward(x);
      y.backward(gy);
      EXPECT_TRUE(bnlab_test::assert_close(y, ref.tensor(step.at("y")), tol));
      EXPECT_TRUE(bnlab_test::assert_close(x.grad(), ref.tensor(step.at("grad_x")), tol));
      if (bn->weight.defined()) {
        EXPECT_TRUE(bnlab_test::assert_close(bn->weight.grad(), ref.tensor(step.at("grad_weight")), tol));
        EXPECT_TRUE(bnlab_test::assert_close(bn->bias.grad(), ref.tensor(step.at("grad_bias")), tol));
      }
      if (bn->running_mean.defined()) {
        EXPECT_TRUE(bnlab_test::assert_close(bn->running_mean, ref.tensor(step.at("running_mean")), tol));
        EXPECT_TRUE(bnlab_test::assert_close(bn->running_var, ref.tensor(step.at("running_var")), tol));
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

TEST(InstalledBnlab, HeaderVersionMatchesThePackageFound) {
  EXPECT_STREQ(BNLAB_VERSION_STRING, BNLAB_PACKAGE_VERSION);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::printf("PyTorch reference seed %lld (fresh cases for this run)\n",
              static_cast<long long>(reference().meta().at("seed").get<int64_t>()));
  return RUN_ALL_TESTS();
}
