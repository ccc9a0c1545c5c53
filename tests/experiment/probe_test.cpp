#include "bnlab/experiment/probe.h"

#include <ATen/CPUGeneratorImpl.h>
#include "scratch_dir.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

namespace {

TEST(Probe, SaturationWithoutAndWithBatchNormMatchesIndependentComputation) {
  bnlab::experiment::ProbeConfig c;
  c.out = bnlab_test::scratch_dir("probe").string();
  const auto r = bnlab::experiment::run_probe(c);
  // The same draws, computed here with plain torch ops.
  auto gen = at::detail::createCPUGenerator(c.seed);
  auto x = torch::randn({c.inputs, c.width}, gen);
  auto w = torch::randn({c.width, c.width}, gen);
  auto pre = x.matmul(w);
  const double sat = 100.0 * (torch::tanh(pre).abs() > 0.97).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(r.without_batch_norm.saturation_pct, sat, 1e-9);
  EXPECT_GT(r.without_batch_norm.saturation_pct, 80.0) << "unit-variance weights over 500 inputs saturate tanh";
  auto normalized = (pre - pre.mean(0)) / (pre.var(0, false) + 1e-5).sqrt();
  const double sat_bn = 100.0 * (torch::tanh(normalized).abs() > 0.97).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(r.with_batch_norm.saturation_pct, sat_bn, 0.05);
  EXPECT_LT(r.with_batch_norm.saturation_pct, 10.0);
  EXPECT_NEAR(r.with_batch_norm.preactivation_std, 1.0, 0.05);
  double total = 0;
  for (double v : r.without_batch_norm.outputs.counts) total += v;
  EXPECT_EQ(total, static_cast<double>(c.inputs * c.width));
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(c.out) / "probe.json"));
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(c.out) / "probe_histograms.csv"));
}

}  // namespace
