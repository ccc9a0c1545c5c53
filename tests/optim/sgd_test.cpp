// bnlab::optim::SGD against torch::optim::SGD: the same parameters and
// momentum buffers, step after step, for every option; state dicts interchange.
#include "bnlab/optim/sgd.h"

#include "assert_close.h"
#include "optimizer_pairs.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace {

using bnlab_test::assert_close;
using bnlab_test::clones;
using bnlab_test::default_tolerance;
using bnlab_test::make_params;

torch::Tensor momentum_buffer(torch::optim::Optimizer& optimizer, const torch::Tensor& param) {
  for (const auto& [key, state] : optimizer.state()) {
    (void)key;
    auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(state.get());
    if (sgd != nullptr && sgd->momentum_buffer().defined() &&
        sgd->momentum_buffer().sizes() == param.sizes()) {
      return sgd->momentum_buffer();
    }
  }
  return torch::Tensor();
}

struct Case {
  std::string name;
  torch::optim::SGDOptions options;
};

class SgdMatchesTorch : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(SgdMatchesTorch, EveryOptionStepByStep) {
  const auto dtype = GetParam();
  // Every term large enough to matter at the tolerance: a wrong weight decay,
  // dampening or Nesterov term moves θ by ~1e-3 per step.
  const std::vector<Case> cases = {
      {"plain", torch::optim::SGDOptions(0.1)},
      {"momentum", torch::optim::SGDOptions(0.05).momentum(0.9)},
      {"momentum, dampening, weight decay",
       torch::optim::SGDOptions(0.05).momentum(0.9).dampening(0.3).weight_decay(0.1)},
      {"nesterov", torch::optim::SGDOptions(0.05).momentum(0.8).nesterov(true)},
      {"nesterov, weight decay", torch::optim::SGDOptions(0.05).momentum(0.8).nesterov(true).weight_decay(0.2)},
      {"weight decay, no momentum", torch::optim::SGDOptions(0.1).weight_decay(0.5)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto ours_params = make_params(dtype);
    auto theirs_params = clones(ours_params);
    bnlab::optim::SGD ours(ours_params, c.options);
    torch::optim::SGD theirs(theirs_params, c.options);
    bnlab_test::step_twins(ours, theirs, ours_params, theirs_params, 0, 6, /*check_each=*/true);
    if (c.options.momentum() != 0) {
      for (size_t i = 0; i + 1 < ours_params.size(); ++i) {
        auto a = momentum_buffer(ours, ours_params[i]);
        auto b = momentum_buffer(theirs, theirs_params[i]);
        ASSERT_TRUE(a.defined() && b.defined());
        EXPECT_TRUE(assert_close(a, b, default_tolerance(dtype)));
      }
    }
    // The parameter without a gradient is untouched, and has no state.
    EXPECT_TRUE(torch::equal(ours_params.back(), theirs_params.back()));
    EXPECT_EQ(ours.state().size(), theirs.state().size());
  }
}

TEST_P(SgdMatchesTorch, ParameterGroupsKeepTheirOwnOptions) {
  bnlab_test::expect_groups_keep_their_options<bnlab::optim::SGD, torch::optim::SGD>(
      GetParam(), torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(0.1),
      torch::optim::SGDOptions(0.2).momentum(0.5));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SgdMatchesTorch, ::testing::Values(torch::kFloat, torch::kDouble),
                         bnlab_test::DtypeName());

TEST(Sgd, ParameterListedTwiceIsUpdatedTwiceAsByTorch) {
  // Each listing is its own update with the one shared momentum buffer.
  const auto options = torch::optim::SGDOptions(0.1).momentum(0.9);
  torch::manual_seed(3);
  auto ours_param = torch::randn({19}).requires_grad_();
  auto theirs_param = ours_param.detach().clone().requires_grad_();
  bnlab::optim::SGD ours({ours_param, ours_param}, options);
  torch::optim::SGD theirs({theirs_param, theirs_param}, options);
  for (int step = 0; step < 3; ++step) {
    auto g = torch::randn({19});
    ours_param.mutable_grad() = g.clone();
    theirs_param.mutable_grad() = g.clone();
    ours.step();
    theirs.step();
    EXPECT_TRUE(assert_close(ours_param.detach(), theirs_param.detach(), default_tolerance(torch::kFloat)))
        << "step " << step;
  }
}

TEST(Sgd, StateDictLoadsIntoTorchSgdAndTrainingContinuesIdentically) {
  // The momentum buffers must carry over (a fresh buffer would diverge).
  bnlab_test::expect_state_dict_round_trip<bnlab::optim::SGD, torch::optim::SGD>(
      torch::optim::SGDOptions(0.05).momentum(0.9).dampening(0.1), "sgd");
}

TEST(Sgd, TorchStateDictLoadsIntoOursAndTrainingContinuesIdentically) {
  bnlab_test::expect_state_dict_round_trip<torch::optim::SGD, bnlab::optim::SGD>(
      torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true), "sgd_from_torch");
}

TEST(Sgd, ClosureIsEvaluatedWithGradientsAndItsLossReturned) {
  auto w = torch::tensor({1.0, -2.0}, torch::kDouble).requires_grad_();
  bnlab::optim::SGD sgd({w}, torch::optim::SGDOptions(0.25));
  auto loss = sgd.step([&] {
    w.mutable_grad() = torch::Tensor();
    auto l = (w * w).sum();  // ∂l/∂w = 2w
    l.backward();
    return l;
  });
  EXPECT_DOUBLE_EQ(loss.item<double>(), 5.0);
  // w ← w − 0.25·2w = w/2
  EXPECT_TRUE(torch::equal(w.detach(), torch::tensor({0.5, -1.0}, torch::kDouble)));
}

}  // namespace
