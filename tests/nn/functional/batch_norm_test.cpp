// bnlab::functional::batch_norm: argument order, semantics from first principles, errors.
#include "bnlab/nn/functional/batch_norm.h"

#include "assert_close.h"
#include "errors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using bnlab_test::assert_close;

using bnlab_test::error_of;

TEST(FunctionalBatchNorm, TrainingNormalizesWithBiasedVarianceAndUpdatesWithUnbiased) {
  torch::manual_seed(0);
  auto x = torch::randn({6, 3, 4}, torch::kDouble) * 2 + 1;
  auto running_mean = torch::zeros({3}, torch::kDouble);
  auto running_var = torch::ones({3}, torch::kDouble);
  auto weight = torch::rand({3}, torch::kDouble) + 0.5;
  auto bias = torch::randn({3}, torch::kDouble);
  const double m = 0.3;
  const double eps = 1e-4;
  auto y = bnlab::functional::batch_norm(x, running_mean, running_var, weight, bias,
                                         /*training=*/true, m, eps);
  // From the definitions, per channel over dims (0, 2): M = 24 values.
  auto mean = x.mean(torch::IntArrayRef{0, 2});
  auto var_biased = x.var(torch::IntArrayRef{0, 2}, /*unbiased=*/false);
  auto var_unbiased = x.var(torch::IntArrayRef{0, 2}, /*unbiased=*/true);
  auto expected = (x - mean.view({1, 3, 1})) / (var_biased.view({1, 3, 1}) + eps).sqrt() *
                      weight.view({1, 3, 1}) + bias.view({1, 3, 1});
  EXPECT_TRUE(assert_close(y, expected));
  EXPECT_TRUE(assert_close(running_mean, m * mean));
  EXPECT_TRUE(assert_close(running_var, (1 - m) * torch::ones({3}, torch::kDouble) + m * var_unbiased));
}

TEST(FunctionalBatchNorm, OptionsOverloadMatchesPositional) {
  torch::manual_seed(1);
  auto x = torch::randn({5, 2});
  auto w = torch::rand({2});
  auto a = bnlab::functional::batch_norm(
      x, torch::Tensor(), torch::Tensor(),
      bnlab::functional::BatchNormFuncOptions().weight(w).training(true).eps(1e-3));
  auto b = bnlab::functional::batch_norm(x, torch::Tensor(), torch::Tensor(), w, torch::Tensor(),
                                         true, 0.1, 1e-3);
  EXPECT_TRUE(torch::equal(a, b));
}

TEST(FunctionalBatchNorm, EmptyBatchGivesEmptyOutputAndLeavesRunningStats) {
  auto rm = torch::zeros({3});
  auto rv = torch::ones({3});
  auto x = torch::randn({0, 3, 4}, torch::requires_grad());
  auto w = torch::ones({3}, torch::requires_grad());
  auto y = bnlab::functional::batch_norm(x, rm, rv, w, torch::Tensor(), true, 0.1, 1e-5);
  EXPECT_EQ(y.sizes(), x.sizes());
  y.sum().backward();
  EXPECT_TRUE(w.grad().eq(0).all().item<bool>());
  EXPECT_TRUE(rm.eq(0).all().item<bool>());
  EXPECT_TRUE(rv.eq(1).all().item<bool>());
}

TEST(FunctionalBatchNormErrors, EvalWithoutRunningStatistics) {
  EXPECT_THAT(error_of([] {
                bnlab::functional::batch_norm(torch::randn({4, 3}), torch::Tensor(),
                                              torch::Tensor(), torch::Tensor(), torch::Tensor(),
                                              /*training=*/false, 0.1, 1e-5);
              }),
              ::testing::HasSubstr("eval mode (training=false) normalizes with running_mean and "
                                   "running_var, but they are undefined"));
}

TEST(FunctionalBatchNormErrors, PerChannelArgumentOfWrongShape) {
  EXPECT_THAT(error_of([] {
                bnlab::functional::batch_norm(torch::randn({4, 3}), torch::zeros({4}),
                                              torch::ones({4}), torch::Tensor(), torch::Tensor(),
                                              true, 0.1, 1e-5);
              }),
              ::testing::HasSubstr("expected running_mean of shape [3] (one value per channel of "
                                   "the input [4, 3]), got running_mean of shape [4]"));
}

TEST(FunctionalBatchNormErrors, InputWithFewerThanTwoDims) {
  EXPECT_THAT(error_of([] {
                bnlab::functional::batch_norm(torch::randn({4}), torch::Tensor(), torch::Tensor(),
                                              torch::Tensor(), torch::Tensor(), true, 0.1, 1e-5);
              }),
              ::testing::HasSubstr("bnlab::batch_norm: expected an input of shape (N, C, *) with at "
                                   "least 2 dims, got 1D input"));
}

TEST(FunctionalBatchNormErrors, IntegerInput) {
  EXPECT_THAT(error_of([] {
                bnlab::functional::batch_norm(torch::ones({4, 3}, torch::kLong), torch::Tensor(),
                                              torch::Tensor(), torch::Tensor(), torch::Tensor(),
                                              true, 0.1, 1e-5);
              }),
              ::testing::HasSubstr("expected a floating-point input, got Long"));
}

TEST(FunctionalBatchNormErrors, CumulativeMomentumNeedsTheModule) {
  EXPECT_THAT(error_of([] {
                bnlab::functional::batch_norm(torch::randn({4, 3}), torch::zeros({3}),
                                              torch::ones({3}), torch::Tensor(), torch::Tensor(),
                                              true, c10::nullopt, 1e-5);
              }),
              ::testing::HasSubstr("momentum=nullopt (cumulative average)"));
}

}  // namespace
