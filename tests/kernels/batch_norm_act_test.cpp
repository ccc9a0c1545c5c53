// The per-channel statistics the fused BatchNorm + activation forward copies
// for the recorder (kernels::batch_norm_act_forward's `channel_stats`) equal
// the batch mean, the biased batch variance and the running statistics before
// the update, computed here with torch ops in float64: on the CPU kernels
// (float32, float64) and on the composite path (bfloat16 has no CPU kernel).
#include "kernels/batch_norm_act.h"

#include "bnlab/nn/probe.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

namespace {

namespace slot = bnlab::nn::activation_stat;

bnlab::autograd::ActivationParams tanh_params() {
  bnlab::autograd::ActivationParams p;
  p.kind = bnlab::autograd::ActivationKind::kTanh;
  return p;
}

TEST(BatchNormActForward, ChannelStatsHoldTheBatchAndRunningStatisticsBeforeTheUpdate) {
  torch::manual_seed(5);
  const int64_t C = 6;
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16}) {
    for (bool training : {true, false}) {
      auto opts = torch::TensorOptions().dtype(dtype);
      auto x = (torch::randn({16, C, 3}) * 3 + 1).to(dtype);
      auto running_mean = torch::randn({C}).to(dtype);
      auto running_var = (torch::rand({C}) + 0.5).to(dtype);
      const auto rm_before = running_mean.to(torch::kDouble).clone();
      const auto rv_before = running_var.to(torch::kDouble).clone();
      auto weight = torch::ones({C}, opts), bias = torch::zeros({C}, opts);
      auto stats = torch::zeros({slot::kCount}, torch::kDouble);
      auto channel_stats = torch::full({4 * C}, -7.0, torch::kDouble);
      bnlab::kernels::batch_norm_act_forward(x, weight, bias, running_mean, running_var, training, 0.1, 1e-5,
                                             tanh_params(), stats, torch::Tensor(), channel_stats);
      const std::string where = std::string(c10::toString(dtype)) + (training ? " train" : " eval");
      const auto xd = x.to(torch::kDouble);
      const double tol = dtype == torch::kBFloat16 ? 1e-2 : 1e-6;
      if (training) {
        EXPECT_TRUE(torch::allclose(channel_stats.narrow(0, 0, C), xd.mean(std::vector<int64_t>{0, 2}), tol, tol)) << where;
        EXPECT_TRUE(torch::allclose(channel_stats.narrow(0, C, C), xd.var(std::vector<int64_t>{0, 2}, /*unbiased=*/false), tol, tol))
            << where;
        // The running statistics were updated after the copy.
        EXPECT_FALSE(torch::allclose(running_mean.to(torch::kDouble), rm_before)) << where;
      } else {
        EXPECT_TRUE(channel_stats.narrow(0, 0, 2 * C).isnan().all().item<bool>()) << where;
      }
      EXPECT_TRUE(torch::equal(channel_stats.narrow(0, 2 * C, C), rm_before)) << where;
      EXPECT_TRUE(torch::equal(channel_stats.narrow(0, 3 * C, C), rv_before)) << where;
    }
  }
}

TEST(BatchNormActForward, ChannelStatsOfTheWrongSizeAreRejected) {
  auto x = torch::randn({8, 4});
  auto stats = torch::zeros({slot::kCount}, torch::kDouble);
  auto channel_stats = torch::zeros({3 * 4}, torch::kDouble);
  try {
    bnlab::kernels::batch_norm_act_forward(x, torch::ones({4}), torch::zeros({4}), torch::zeros({4}),
                                           torch::ones({4}), true, 0.1, 1e-5, tanh_params(), stats, torch::Tensor(),
                                           channel_stats);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected the probe's channel_stats to be float64 of 4*C = 16"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
