// bnlab::optim::Adam and AdamW against torch::optim's: the same parameters and
// moments, step after step, for every option; state dicts interchange.
#include "bnlab/optim/adam.h"

#include "assert_close.h"
#include "optimizer_pairs.h"
#include "scratch_dir.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <tuple>
#include <vector>

namespace {

using bnlab_test::assert_close;
using bnlab_test::clones;
using bnlab_test::default_tolerance;
using bnlab_test::make_params;

// The moments of the state kept for `param` (matched by shape: the test's
// parameters all have different shapes).
template <typename ParamState>
const ParamState* state_of(torch::optim::Optimizer& optimizer, const torch::Tensor& param) {
  for (const auto& [key, state] : optimizer.state()) {
    (void)key;
    auto* s = dynamic_cast<const ParamState*>(state.get());
    if (s != nullptr && s->exp_avg().sizes() == param.sizes()) return s;
  }
  return nullptr;
}

// Steps a bnlab optimizer and its torch twin on the same gradients and checks
// parameters after every step and the moments at the end. A learning rate of
// 0.05 makes every term visible at the tolerance: Adam moves θ by about η per
// step whatever the gradient's scale.
template <typename Ours, typename Theirs, typename ParamState, typename Options>
void check_twins(const Options& options, torch::ScalarType dtype, int steps) {
  auto ours_params = make_params(dtype);
  auto theirs_params = clones(ours_params);
  Ours ours(ours_params, options);
  Theirs theirs(theirs_params, options);
  bnlab_test::step_twins(ours, theirs, ours_params, theirs_params, 0, steps, /*check_each=*/true);
  for (size_t i = 0; i + 1 < ours_params.size(); ++i) {
    SCOPED_TRACE("moments of parameter " + std::to_string(i));
    const auto* a = state_of<ParamState>(ours, ours_params[i]);
    const auto* b = state_of<ParamState>(theirs, theirs_params[i]);
    ASSERT_TRUE(a != nullptr && b != nullptr);
    EXPECT_EQ(a->step(), b->step());
    EXPECT_TRUE(assert_close(a->exp_avg(), b->exp_avg(), default_tolerance(dtype)));
    EXPECT_TRUE(assert_close(a->exp_avg_sq(), b->exp_avg_sq(), default_tolerance(dtype)));
    if (options.amsgrad()) {
      EXPECT_TRUE(assert_close(a->max_exp_avg_sq(), b->max_exp_avg_sq(), default_tolerance(dtype)));
    }
  }
  EXPECT_TRUE(torch::equal(ours_params.back(), theirs_params.back())) << "no gradient: untouched";
  EXPECT_EQ(ours.state().size(), theirs.state().size());
}

class AdamMatchesTorch : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(AdamMatchesTorch, EveryOptionStepByStep) {
  const auto dtype = GetParam();
  using O = torch::optim::AdamOptions;
  const std::vector<std::pair<std::string, O>> cases = {
      {"defaults", O(0.05)},
      {"betas, eps", O(0.05).betas(std::make_tuple(0.8, 0.95)).eps(1e-3)},
      {"L2 weight decay", O(0.05).weight_decay(0.3)},
      {"AMSGrad, weight decay", O(0.05).amsgrad(true).weight_decay(0.1)},
  };
  for (const auto& [name, options] : cases) {
    SCOPED_TRACE(name);
    check_twins<bnlab::optim::Adam, torch::optim::Adam, torch::optim::AdamParamState>(options, dtype, 8);
  }
}

TEST_P(AdamMatchesTorch, AdamWEveryOptionStepByStep) {
  const auto dtype = GetParam();
  using O = torch::optim::AdamWOptions;
  const std::vector<std::pair<std::string, O>> cases = {
      {"defaults (weight decay 0.01)", O(0.05)},
      {"large decoupled decay", O(0.05).weight_decay(0.5)},
      {"no decay", O(0.05).weight_decay(0)},
      {"AMSGrad", O(0.05).amsgrad(true).betas(std::make_tuple(0.7, 0.9))},
  };
  for (const auto& [name, options] : cases) {
    SCOPED_TRACE(name);
    check_twins<bnlab::optim::AdamW, torch::optim::AdamW, torch::optim::AdamWParamState>(options, dtype, 8);
  }
}

TEST_P(AdamMatchesTorch, ParameterGroupsKeepTheirOwnOptions) {
  bnlab_test::expect_groups_keep_their_options<bnlab::optim::Adam, torch::optim::Adam>(
      GetParam(), torch::optim::AdamOptions(0.05).weight_decay(0.1),
      torch::optim::AdamOptions(0.2).betas(std::make_tuple(0.5, 0.9)).amsgrad(true));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, AdamMatchesTorch, ::testing::Values(torch::kFloat, torch::kDouble),
                         bnlab_test::DtypeName());

TEST(Adam, StateDictLoadsIntoTorchAdamAndTrainingContinuesIdentically) {
  // The moments and the step counts (bias corrections) must carry over.
  bnlab_test::expect_state_dict_round_trip<bnlab::optim::Adam, torch::optim::Adam>(
      torch::optim::AdamOptions(0.05).weight_decay(0.1), "adam");
  bnlab_test::expect_state_dict_round_trip<bnlab::optim::AdamW, torch::optim::AdamW>(
      torch::optim::AdamWOptions(0.05).weight_decay(0.2).amsgrad(true), "adamw");
}

TEST(Adam, TorchStateDictLoadsIntoOursAndTrainingContinuesIdentically) {
  bnlab_test::expect_state_dict_round_trip<torch::optim::Adam, bnlab::optim::Adam>(
      torch::optim::AdamOptions(0.05).amsgrad(true), "adam_from_torch");
}

TEST(Adam, UpdatingAParameterSavedForABackwardIsCaughtAsByTorch) {
  // The fused step writes θ through a pointer; it must still count as an
  // in-place change, or the pending backward would use the new θ silently.
  auto w = torch::randn({40}).requires_grad_();
  bnlab::optim::Adam adam({w}, torch::optim::AdamOptions(0.1));
  auto pending = (w * w).sum();  // saves w for its backward
  w.mutable_grad() = torch::randn({40});
  adam.step();
  EXPECT_THROW(pending.backward(), c10::Error);
}

TEST(Adam, StateOfAnotherShapeIsAnErrorNotAnOverrun) {
  // A state dict from a model with other shapes loads (torch::optim maps it by
  // position); the step must then fail as torch's does, not write past the moments.
  auto small = torch::randn({5}).requires_grad_();
  bnlab::optim::Adam first({small}, torch::optim::AdamOptions(0.1));
  small.mutable_grad() = torch::randn({5});
  first.step();
  const auto path = (bnlab_test::scratch_dir("adam_shapes") / "optimizer.pt").string();
  torch::save(first, path);
  auto large = torch::randn({4099}).requires_grad_();
  bnlab::optim::Adam second({large}, torch::optim::AdamOptions(0.1));
  torch::load(second, path);
  large.mutable_grad() = torch::randn({4099});
  EXPECT_THROW(second.step(), c10::Error);
}

TEST(Adam, SparseGradientIsAClearError) {
  auto w = torch::randn({4, 3}).requires_grad_();
  bnlab::optim::Adam adam({w}, torch::optim::AdamOptions(0.1));
  w.mutable_grad() = torch::randn({4, 3}).to_sparse();
  try {
    adam.step();
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bnlab::optim::Adam: expected dense gradients"), std::string::npos) << e.what();
  }
}

}  // namespace
