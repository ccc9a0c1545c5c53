// bnlab::nn::BatchNorm{1,2,3}d as a drop-in for torch::nn::BatchNorm{1,2,3}d.
#include "bnlab/nn/modules/batch_norm.h"

#include "assert_close.h"
#include "errors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <sstream>

namespace {

using bnlab_test::assert_close;

std::vector<std::string> keys(const torch::OrderedDict<std::string, torch::Tensor>& d) {
  return d.keys();
}

template <typename Ours, typename Theirs>
void expect_same_state_names(const bnlab::nn::BatchNormOptions& o) {
  Ours ours(o);
  Theirs theirs(torch::nn::BatchNormOptions(o.num_features())
                    .affine(o.affine())
                    .track_running_stats(o.track_running_stats()));
  EXPECT_EQ(keys(ours->named_parameters()), keys(theirs->named_parameters()));
  EXPECT_EQ(keys(ours->named_buffers()), keys(theirs->named_buffers()));
}

TEST(BatchNormModule, HasTorchParameterAndBufferNames) {
  for (bool affine : {true, false}) {
    for (bool track : {true, false}) {
      auto o = bnlab::nn::BatchNormOptions(4).affine(affine).track_running_stats(track);
      expect_same_state_names<bnlab::nn::BatchNorm1d, torch::nn::BatchNorm1d>(o);
      expect_same_state_names<bnlab::nn::BatchNorm2d, torch::nn::BatchNorm2d>(o);
      expect_same_state_names<bnlab::nn::BatchNorm3d, torch::nn::BatchNorm3d>(o);
    }
  }
}

TEST(BatchNormModule, InitializesLikeTorch) {
  bnlab::nn::BatchNorm2d bn(5);
  EXPECT_TRUE(bn->weight.eq(1).all().item<bool>());
  EXPECT_TRUE(bn->bias.eq(0).all().item<bool>());
  EXPECT_TRUE(bn->weight.requires_grad());
  EXPECT_TRUE(bn->running_mean.eq(0).all().item<bool>());
  EXPECT_TRUE(bn->running_var.eq(1).all().item<bool>());
  EXPECT_FALSE(bn->running_mean.requires_grad());
  EXPECT_EQ(bn->num_batches_tracked.scalar_type(), torch::kLong);
  EXPECT_EQ(bn->num_batches_tracked.dim(), 0);
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 0);
  EXPECT_EQ(bn->weight.scalar_type(), torch::kFloat);

  bnlab::nn::BatchNorm2d plain(bnlab::nn::BatchNorm2dOptions(5).affine(false).track_running_stats(false));
  EXPECT_FALSE(plain->weight.defined());
  EXPECT_FALSE(plain->running_mean.defined());
  EXPECT_FALSE(plain->num_batches_tracked.defined());
}

TEST(BatchNormModule, DefaultOptionsMatchTorch) {
  bnlab::nn::BatchNormOptions ours(3);
  torch::nn::BatchNormOptions theirs(3);
  EXPECT_EQ(ours.eps(), theirs.eps());
  EXPECT_EQ(ours.momentum(), theirs.momentum());
  EXPECT_EQ(ours.affine(), theirs.affine());
  EXPECT_EQ(ours.track_running_stats(), theirs.track_running_stats());
}

TEST(BatchNormModule, ResetRunningStatsAndParameters) {
  bnlab::nn::BatchNorm1d bn(3);
  bn->train();
  bn->forward(torch::randn({8, 3}) * 3 + 1);
  {
    torch::NoGradGuard no_grad;
    bn->weight.fill_(2);
    bn->bias.fill_(-1);
  }
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
  bn->reset_running_stats();
  EXPECT_TRUE(bn->running_mean.eq(0).all().item<bool>());
  EXPECT_TRUE(bn->running_var.eq(1).all().item<bool>());
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 0);
  EXPECT_TRUE(bn->weight.eq(2).all().item<bool>()) << "reset_running_stats keeps the parameters";
  bn->reset_parameters();
  EXPECT_TRUE(bn->weight.eq(1).all().item<bool>());
  EXPECT_TRUE(bn->bias.eq(0).all().item<bool>());
}

TEST(BatchNormModule, PrettyPrintNamesTheModuleAndItsOptions) {
  std::ostringstream s;
  s << *bnlab::nn::BatchNorm2d(64);
  EXPECT_EQ(s.str(),
            "bnlab::nn::BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)");
  std::ostringstream s3;
  s3 << *bnlab::nn::BatchNorm3d(
      bnlab::nn::BatchNorm3dOptions(8).eps(1e-3).momentum(c10::nullopt).affine(false));
  EXPECT_EQ(s3.str(),
            "bnlab::nn::BatchNorm3d(8, eps=0.001, momentum=None, affine=false, track_running_stats=true)");
  // Torch prints the same fields in the same format.
  std::ostringstream t;
  t << *torch::nn::BatchNorm2d(64);
  EXPECT_EQ(s.str().substr(std::string("bnlab::nn::").size()),
            t.str().substr(std::string("torch::nn::").size()));
}

TEST(BatchNormModule, SaveLoadRoundTrip) {
  torch::manual_seed(1);
  bnlab::nn::BatchNorm2d saved(3);
  saved->forward(torch::randn({4, 3, 2, 2}) * 2 + 1);
  saved->forward(torch::randn({4, 3, 2, 2}));
  {
    torch::NoGradGuard no_grad;
    saved->weight.uniform_();
  }
  std::stringstream archive;
  torch::save(saved, archive);
  bnlab::nn::BatchNorm2d loaded(3);
  torch::load(loaded, archive);
  EXPECT_TRUE(torch::equal(loaded->weight, saved->weight));
  EXPECT_TRUE(torch::equal(loaded->running_mean, saved->running_mean));
  EXPECT_TRUE(torch::equal(loaded->running_var, saved->running_var));
  EXPECT_EQ(loaded->num_batches_tracked.item<int64_t>(), 2);
  saved->eval();
  loaded->eval();
  auto x = torch::randn({2, 3, 2, 2});
  EXPECT_TRUE(torch::equal(loaded->forward(x), saved->forward(x)));
}

TEST(BatchNormModule, LoadsStateSavedFromTorchBatchNorm) {
  // Drop-in: a checkpoint of torch::nn::BatchNorm2d loads into bnlab's module.
  torch::manual_seed(2);
  torch::nn::BatchNorm2d theirs(4);
  theirs->forward(torch::randn({3, 4, 2, 2}) * 3 - 1);
  std::stringstream archive;
  torch::save(theirs, archive);
  bnlab::nn::BatchNorm2d ours(4);
  torch::load(ours, archive);
  EXPECT_TRUE(torch::equal(ours->running_mean, theirs->running_mean));
  EXPECT_TRUE(torch::equal(ours->running_var, theirs->running_var));
  EXPECT_EQ(ours->num_batches_tracked.item<int64_t>(), 1);
}

TEST(BatchNormModule, WorksInsideSequential) {
  torch::manual_seed(3);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 4, 3).padding(1)),
                            bnlab::nn::BatchNorm2d(4), torch::nn::ReLU());
  auto x = torch::randn({5, 2, 6, 6}, torch::requires_grad());
  auto y = net->forward(x);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{5, 4, 6, 6}));
  y.pow(2).sum().backward();
  EXPECT_TRUE(x.grad().defined());
  auto* bn = net[1]->as<bnlab::nn::BatchNorm2d>();
  ASSERT_NE(bn, nullptr);
  EXPECT_TRUE(bn->weight.grad().defined());
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
}

TEST(BatchNormModule, ToDoubleConvertsStateButKeepsTheCounterIntegral) {
  bnlab::nn::BatchNorm1d bn(3);
  bn->to(torch::kDouble);
  EXPECT_EQ(bn->weight.scalar_type(), torch::kDouble);
  EXPECT_EQ(bn->running_var.scalar_type(), torch::kDouble);
  EXPECT_EQ(bn->num_batches_tracked.scalar_type(), torch::kLong);
  auto y = bn->forward(torch::randn({4, 3}, torch::kDouble));
  EXPECT_EQ(y.scalar_type(), torch::kDouble);
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
  // Also through a parent module, and with affine/track switched off.
  torch::nn::Sequential net(bnlab::nn::BatchNorm1d(bnlab::nn::BatchNorm1dOptions(3).affine(false)));
  net->to(torch::kDouble);
  EXPECT_EQ(net[0]->as<bnlab::nn::BatchNorm1d>()->num_batches_tracked.scalar_type(), torch::kLong);
  bnlab::nn::BatchNorm1d untracked(bnlab::nn::BatchNorm1dOptions(3).track_running_stats(false));
  untracked->to(torch::kDouble);
  EXPECT_EQ(untracked->forward(torch::randn({4, 3}, torch::kDouble)).scalar_type(), torch::kDouble);
}

TEST(BatchNormModule, CloneIsDeep) {
  bnlab::nn::BatchNorm2d bn(2);
  auto copy = std::dynamic_pointer_cast<bnlab::nn::BatchNorm2dImpl>(bn->clone());
  ASSERT_NE(copy, nullptr);
  copy->forward(torch::randn({4, 2, 3, 3}) + 5);
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 0);
  EXPECT_TRUE(bn->running_mean.eq(0).all().item<bool>());
}

TEST(BatchNormModule, Bfloat16InputsNormalize) {
  torch::manual_seed(4);
  bnlab::nn::BatchNorm2d bn(3);
  auto x = torch::randn({4, 3, 5, 5}) * 2 + 3;
  auto expected = bn->forward(x);  // float32
  bnlab::nn::BatchNorm2d bf(3);
  bf->to(torch::kBFloat16);
  auto y = bf->forward(x.to(torch::kBFloat16));
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  // Rounding the input to bfloat16 moves x̂ by up to ~|x|/σ·2⁻⁸.
  EXPECT_TRUE(assert_close(y.to(torch::kFloat), expected, {1.6e-2, 5e-2}));
}

TEST(BatchNormModule, EvalUsesRunningStatistics) {
  bnlab::nn::BatchNorm1d bn(2);
  {
    torch::NoGradGuard no_grad;
    bn->running_mean.copy_(torch::tensor({1.0f, -2.0f}));
    bn->running_var.copy_(torch::tensor({4.0f, 0.25f}));
  }
  bn->eval();
  auto x = torch::tensor({{3.0f, -1.0f}, {1.0f, -2.5f}});
  auto expected = (x - torch::tensor({1.0f, -2.0f})) / torch::sqrt(torch::tensor({4.0f, 0.25f}) + 1e-5);
  EXPECT_TRUE(assert_close(bn->forward(x), expected));
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 0) << "eval does not count batches";
}

TEST(BatchNormModule, UntrackedModuleUsesBatchStatisticsInEval) {
  bnlab::nn::BatchNorm1d bn(bnlab::nn::BatchNorm1dOptions(2).track_running_stats(false));
  bn->eval();
  auto x = torch::tensor({{3.0f, -1.0f}, {1.0f, -3.0f}});
  // Each channel has values {a, b}: normalized to ±1 (up to eps).
  auto y = bn->forward(x);
  auto expected = torch::tensor({{1.0f, 1.0f}, {-1.0f, -1.0f}}) / std::sqrt(1.0 + 1e-5);
  EXPECT_TRUE(assert_close(y, expected));
}

// ---- bad input --------------------------------------------------------------

using bnlab_test::error_of;

TEST(BatchNormModuleErrors, WrongNumberOfDims) {
  EXPECT_THAT(error_of([] { bnlab::nn::BatchNorm2d(3)->forward(torch::randn({2, 3, 4})); }),
              ::testing::HasSubstr("bnlab::nn::BatchNorm2d: expected 4D (N, C, H, W) input (got 3D input)"));
  EXPECT_THAT(error_of([] { bnlab::nn::BatchNorm1d(3)->forward(torch::randn({2, 3, 4, 4})); }),
              ::testing::HasSubstr("expected 2D (N, C) or 3D (N, C, L) input (got 4D input)"));
  EXPECT_THAT(error_of([] { bnlab::nn::BatchNorm3d(3)->forward(torch::randn({2, 3, 4, 4})); }),
              ::testing::HasSubstr("expected 5D (N, C, D, H, W) input (got 4D input)"));
}

TEST(BatchNormModuleErrors, ChannelCountDiffersFromNumFeatures) {
  EXPECT_THAT(error_of([] { bnlab::nn::BatchNorm2d(3)->forward(torch::randn({2, 5, 4, 4})); }),
              ::testing::HasSubstr("expected input with 3 channels (dim 1, num_features), got 5"));
}

TEST(BatchNormModuleErrors, OneValuePerChannelInTraining) {
  bnlab::nn::BatchNorm1d bn(3);
  EXPECT_THAT(error_of([&] { bn->forward(torch::randn({1, 3})); }),
              ::testing::HasSubstr(
                  "Expected more than 1 value per channel when training, got input size [1, 3]"));
  bn->eval();
  EXPECT_NO_THROW(bn->forward(torch::randn({1, 3})));
}

TEST(BatchNormModuleErrors, DtypeMismatch) {
  bnlab::nn::BatchNorm1d bn(3);
  EXPECT_THAT(error_of([&] { bn->forward(torch::randn({4, 3}, torch::kDouble)); }),
              ::testing::HasSubstr("expected weight of the input's dtype Double, got Float"));
}

TEST(BatchNormModuleErrors, DeviceMismatch) {
  bnlab::nn::BatchNorm1d bn(3);
  auto meta = torch::empty({4, 3}, torch::TensorOptions().device(torch::kMeta));
  EXPECT_THAT(error_of([&] { bn->forward(meta); }),
              ::testing::HasSubstr("expected weight on the input's device meta, got cpu"));
}

TEST(BatchNormModuleErrors, ErrorLeavesStateUntouched) {
  bnlab::nn::BatchNorm1d bn(3);
  EXPECT_ANY_THROW(bn->forward(torch::randn({4, 3}, torch::kDouble)));
  EXPECT_ANY_THROW(bn->forward(torch::randn({1, 3})));
  EXPECT_TRUE(bn->running_mean.eq(0).all().item<bool>());
  EXPECT_TRUE(bn->running_var.eq(1).all().item<bool>());
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 0);
}

}  // namespace
