// The drift slots of a BatchNorm statistics row (kernels::batch_norm_drift_stats)
// equal their formulas computed here with torch ops in float64:
//   mean drift = mean_c |μ_B − μ_run| / √(σ²_run + ε),  var drift = mean_c |ln(σ²_B / σ²_run)|
// at float32 and float64 statistics, with variance ratios of 1e±250, and with
// zero or NaN variances.
#include "kernels/batch_norm.h"

#include "bnlab/nn/probe.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace {

namespace slot = bnlab::nn::batch_norm_stat;
constexpr double kEps = 1e-5;

torch::Tensor drift_row(const torch::Tensor& bmean, const torch::Tensor& bvar, const torch::Tensor& rmean,
                        const torch::Tensor& rvar) {
  auto stats = torch::zeros({slot::kCount}, torch::kDouble);
  bnlab::kernels::batch_norm_drift_stats(stats, torch::Tensor(), bmean, bvar, rmean, rvar, kEps, bmean.numel(),
                                         /*count=*/8);
  return stats;
}

double expected_var_drift(const torch::Tensor& bvar, const torch::Tensor& rvar) {
  return (bvar.to(torch::kDouble) / rvar.to(torch::kDouble)).log().abs().mean().item<double>();
}

double expected_mean_drift(const torch::Tensor& bmean, const torch::Tensor& rmean, const torch::Tensor& rvar) {
  auto d = torch::kDouble;
  return ((bmean.to(d) - rmean.to(d)).abs() / (rvar.to(d) + kEps).sqrt()).mean().item<double>();
}

TEST(BatchNormDriftStats, MatchesFormulasOnRandomStatistics) {
  torch::manual_seed(3);
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    for (int64_t channels : {1, 7, 100, 1000}) {
      auto opts = torch::TensorOptions().dtype(dtype);
      auto bmean = torch::randn({channels}, opts), rmean = torch::randn({channels}, opts);
      auto bvar = torch::rand({channels}, opts) * 4 + 0.01, rvar = torch::rand({channels}, opts) * 4 + 0.01;
      auto s = drift_row(bmean, bvar, rmean, rvar);
      EXPECT_NEAR(s[slot::kVarDrift].item<double>(), expected_var_drift(bvar, rvar), 1e-12)
          << "channels " << channels << " dtype " << dtype;
      EXPECT_NEAR(s[slot::kMeanDrift].item<double>(), expected_mean_drift(bmean, rmean, rvar), 1e-12)
          << "channels " << channels << " dtype " << dtype;
    }
  }
}

TEST(BatchNormDriftStats, VarianceRatiosFarFromOneBothWays) {
  // Half the ratios are 1e250, half 1e-250: each adds 250·ln 10.
  const int64_t channels = 64;
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto mean = torch::zeros({channels}, opts);
  auto bvar = torch::full({channels}, 1e250, opts), rvar = torch::ones({channels}, opts);
  bvar.slice(0, 0, channels, 2).fill_(1e-250);
  auto s = drift_row(mean, bvar, mean, rvar);
  const double expected = 250 * std::log(10.0);
  EXPECT_NEAR(s[slot::kVarDrift].item<double>(), expected, 1e-12 * expected);
  EXPECT_NEAR(s[slot::kVarDrift].item<double>(), expected_var_drift(bvar, rvar), 1e-12 * expected);
}

TEST(BatchNormDriftStats, ZeroAndNaNVariances) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto mean = torch::zeros({4}, opts);
  auto rvar = torch::ones({4}, opts);
  auto zero_batch_var = torch::tensor({1.0, 0.0, 2.0, 0.5}, opts);
  EXPECT_EQ(drift_row(mean, zero_batch_var, mean, rvar)[slot::kVarDrift].item<double>(),
            std::numeric_limits<double>::infinity());
  auto zero_running_var = torch::tensor({1.0, 1.0, 0.0, 1.0}, opts);
  EXPECT_EQ(drift_row(mean, rvar, mean, zero_running_var)[slot::kVarDrift].item<double>(),
            std::numeric_limits<double>::infinity());
  auto nan_var = torch::tensor({1.0, std::nan(""), 2.0, 0.5}, opts);
  EXPECT_TRUE(std::isnan(drift_row(mean, nan_var, mean, rvar)[slot::kVarDrift].item<double>()));
  // All ratios 1: no drift.
  EXPECT_EQ(drift_row(mean, rvar, mean, rvar)[slot::kVarDrift].item<double>(), 0.0);
}

}  // namespace
