// bnlab's fused optimizers report each parameter's statistics from the pass of
// their update: checked against the same sums computed here from the tensors
// before and after the step.
#include "bnlab/optim/update_statistics.h"

#include "bnlab/optim/adam.h"
#include "bnlab/optim/sgd.h"

#include "optimizer_pairs.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {

namespace bo = bnlab::optim;
namespace us = bnlab::optim::update_stat;
using bnlab_test::clones;
using bnlab_test::make_params;
using bnlab_test::set_grads;

// Which of make_params' parameters the fused kernels update (the others take
// torch's ops or have no gradient, and must not be reported).
bool fused_param(size_t i) { return i == 0 || i == 1 || i == 3; }

// The row's sums recomputed in double from θ before and after the step and g;
// `scale` gets each sum's Σ|term|, the yardstick of its rounding error.
void expected_row(const torch::Tensor& before, const torch::Tensor& after, const torch::Tensor& grad, double* row,
                  double* scale) {
  const auto t = after.detach().to(torch::kDouble), g = grad.to(torch::kDouble);
  const auto d = t - before.to(torch::kDouble);
  const torch::Tensor terms[6] = {t, t * t, g, g * g, d, d * d};
  for (int k = 0; k < 6; ++k) {
    row[k] = terms[k].sum().item<double>();
    scale[k] = terms[k].abs().sum().item<double>();
  }
}

// Steps a reporting optimizer and a silent twin over make_params' parameters
// for three steps: the reporting one must update θ identically and fill, for
// exactly the fused parameters, rows equal to the sums of θ, g and Δθ.
template <typename Optimizer, typename Options>
void check_reported_rows(const Options& options, torch::ScalarType dtype) {
  auto reporting_params = make_params(dtype);
  auto silent_params = clones(reporting_params);
  Optimizer reporting(reporting_params, options);
  Optimizer silent(silent_params, options);
  auto statistics = std::make_shared<bo::UpdateStatistics>(reporting_params);
  reporting.report_update_statistics(statistics);
  // float32 sums are accumulated in vector lanes and flushed to double every
  // 256 vectors: at most 256 roundings of 2⁻²⁴ relative to Σ|term|.
  const double tolerance = dtype == torch::kFloat ? 256 * std::ldexp(1.0, -24) : 1e-12;

  std::vector<double> rows;
  for (int step = 0; step < 3; ++step) {
    set_grads(reporting_params, silent_params, step);
    rows.assign(reporting_params.size() * us::kCount, std::numeric_limits<double>::quiet_NaN());
    std::vector<double*> row_pointers;
    for (size_t i = 0; i < reporting_params.size(); ++i) row_pointers.push_back(rows.data() + i * us::kCount);
    statistics->set_rows(row_pointers);
    std::vector<torch::Tensor> before;
    for (const auto& p : reporting_params) before.push_back(p.detach().clone());
    reporting.step();
    silent.step();
    bnlab_test::expect_same(reporting_params, silent_params, "step " + std::to_string(step));
    for (size_t i = 0; i < reporting_params.size(); ++i) {
      SCOPED_TRACE("step " + std::to_string(step) + ", parameter " + std::to_string(i));
      ASSERT_EQ(statistics->written(i), fused_param(i));
      const double* row = row_pointers[i];
      if (!fused_param(i)) {
        EXPECT_TRUE(std::isnan(row[0])) << "an unreported row is left alone";
        continue;
      }
      double want[6], scale[6];
      expected_row(before[i], reporting_params[i], reporting_params[i].grad(), want, scale);
      for (int k = 0; k < 6; ++k) EXPECT_LE(std::abs(row[k] - want[k]), tolerance * scale[k] + 1e-300) << "slot " << k;
      EXPECT_EQ(row[us::kNonFiniteParam], 0.0);
      EXPECT_EQ(row[us::kNonFiniteGrad], 0.0);
    }
  }
  // Without rows, a step writes nothing (the last step's rows keep their values).
  statistics->clear_rows();
  const auto last_rows = rows;
  set_grads(reporting_params, silent_params, 3);
  reporting.step();
  for (size_t k = 0; k < rows.size(); ++k) {
    EXPECT_TRUE(rows[k] == last_rows[k] || (std::isnan(rows[k]) && std::isnan(last_rows[k]))) << k;
  }
}

class UpdateStatisticsOf : public ::testing::TestWithParam<torch::ScalarType> {};
INSTANTIATE_TEST_SUITE_P(Dtypes, UpdateStatisticsOf, ::testing::Values(torch::kFloat, torch::kDouble),
                         bnlab_test::DtypeName());

TEST_P(UpdateStatisticsOf, SgdWithMomentumAndWeightDecay) {
  check_reported_rows<bo::SGD>(torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(1e-2),
                               GetParam());
}

TEST_P(UpdateStatisticsOf, PlainSgd) {
  check_reported_rows<bo::SGD>(torch::optim::SGDOptions(0.1), GetParam());
}

TEST_P(UpdateStatisticsOf, Adam) {
  check_reported_rows<bo::Adam>(torch::optim::AdamOptions(1e-2).weight_decay(1e-3),
                                GetParam());
}

TEST_P(UpdateStatisticsOf, AdamWWithAmsgrad) {
  check_reported_rows<bo::AdamW>(torch::optim::AdamWOptions(1e-2).amsgrad(true),
                                 GetParam());
}

TEST(UpdateStatistics, NonFiniteGradientsAndParametersAreCounted) {
  auto p = torch::randn({50}).requires_grad_();
  bo::SGD sgd({p}, torch::optim::SGDOptions(0.1));
  auto statistics = std::make_shared<bo::UpdateStatistics>(std::vector<torch::Tensor>{p});
  sgd.report_update_statistics(statistics);
  double row[us::kCount];
  statistics->set_rows({row});
  auto g = torch::randn({50});
  g[7] = std::numeric_limits<float>::quiet_NaN();
  g[40] = std::numeric_limits<float>::infinity();
  p.mutable_grad() = g;
  sgd.step();
  EXPECT_EQ(row[us::kNonFiniteGrad], 2.0);
  EXPECT_EQ(row[us::kNonFiniteParam], torch::isfinite(p.detach()).logical_not().sum().item<double>());
  EXPECT_EQ(row[us::kNonFiniteParam], 2.0);
}

TEST(UpdateStatistics, ParametersItDoesNotWatchAreNotReported) {
  auto watched = torch::randn({20}).requires_grad_();
  auto other = torch::randn({20}).requires_grad_();
  bo::Adam adam({watched, other}, torch::optim::AdamOptions(0.1));
  auto statistics = std::make_shared<bo::UpdateStatistics>(std::vector<torch::Tensor>{watched});
  adam.report_update_statistics(statistics);
  double row[us::kCount] = {};
  statistics->set_rows({row});
  watched.mutable_grad() = torch::ones({20});
  other.mutable_grad() = torch::ones({20});
  adam.step();
  EXPECT_TRUE(statistics->written(0));
  EXPECT_EQ(statistics->claim(other), nullptr);
  EXPECT_EQ(statistics->size(), 1u);
}

TEST(UpdateStatistics, ClaimsInAnyOrderReachTheirOwnRows) {
  // claim() guesses the slot after the last one claimed; an optimizer that
  // holds the parameters in another order must still get each one's own row.
  std::vector<torch::Tensor> params;
  for (int i = 0; i < 4; ++i) params.push_back(torch::full({3}, static_cast<float>(i)));
  bo::UpdateStatistics statistics(params);
  double rows[4][us::kCount] = {};
  statistics.set_rows({rows[0], rows[1], rows[2], rows[3]});
  for (const int i : {2, 3, 0, 1, 1}) EXPECT_EQ(statistics.claim(params[static_cast<size_t>(i)]), rows[i]) << i;
  EXPECT_EQ(statistics.claim(torch::zeros({3})), nullptr) << "an unwatched parameter";
  EXPECT_EQ(statistics.claim(params[2]), rows[2]) << "after a miss";
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(statistics.written(i)) << i;
  // A slot without a row this step is not claimed, and the next guess still works.
  statistics.set_rows({rows[0], nullptr, rows[2], rows[3]});
  EXPECT_EQ(statistics.claim(params[0]), rows[0]);
  EXPECT_EQ(statistics.claim(params[1]), nullptr);
  EXPECT_EQ(statistics.claim(params[2]), rows[2]);
  EXPECT_FALSE(statistics.written(1));
}

TEST(UpdateStatistics, RowsOfAnotherCountAreAnError) {
  bo::UpdateStatistics statistics({torch::zeros({3}), torch::zeros({4})});
  double row[us::kCount];
  try {
    statistics.set_rows({row});
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected 2 rows (one per watched parameter), got 1"), std::string::npos)
        << e.what();
  }
}

}  // namespace
