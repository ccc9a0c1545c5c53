// Twin parameter sets for checking a bnlab optimizer against its torch::optim
// counterpart step by step.
#pragma once

#include "assert_close.h"
#include "scratch_dir.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace bnlab_test {

// Parameters that exercise every path, in this order:
//   0, 1  contiguous, with vector tails (fused);
//   2     a transposed, non-contiguous leaf (torch's ops);
//   3     100,003 values: several at::parallel_for chunks, and a tail (fused);
//   4     contiguous, but given non-contiguous gradients (torch's ops);
//   5     never gets a gradient (untouched, no state).
constexpr size_t kNonContiguousGradParam = 4;
inline std::vector<torch::Tensor> make_params(torch::ScalarType dtype) {
  torch::manual_seed(7);
  return {torch::randn({37}, dtype).requires_grad_(),         torch::randn({5, 33}, dtype).requires_grad_(),
          torch::randn({8, 6}, dtype).t().requires_grad_(),   torch::randn({100003}, dtype).requires_grad_(),
          torch::randn({6, 7}, dtype).requires_grad_(),       torch::randn({3}, dtype).requires_grad_()};
}

inline std::vector<torch::Tensor> clones(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) {
    auto c = torch::empty_strided(p.sizes(), p.strides(), p.options());
    c.copy_(p.detach());
    out.push_back(c.requires_grad_());
  }
  return out;
}

// Gives both parameter sets the same gradient for `step` (none for the last parameter).
inline void set_grads(std::vector<torch::Tensor>& a, std::vector<torch::Tensor>& b, int step) {
  torch::manual_seed(100 + step);
  for (size_t i = 0; i + 1 < a.size(); ++i) {
    const auto options = a[i].options().requires_grad(false);
    if (i == kNonContiguousGradParam) {
      // The transpose of a (cols, rows) tensor: a's shape, column-major.
      auto g = torch::randn({a[i].size(1), a[i].size(0)}, options);
      a[i].mutable_grad() = g.clone().t();
      b[i].mutable_grad() = g.clone().t();
      continue;
    }
    auto g = torch::randn(a[i].sizes(), options);
    a[i].mutable_grad() = g.clone();
    b[i].mutable_grad() = g.clone();
  }
}

inline void expect_same(const std::vector<torch::Tensor>& ours, const std::vector<torch::Tensor>& theirs,
                 const std::string& what) {
  for (size_t i = 0; i < ours.size(); ++i) {
    SCOPED_TRACE(what + ", parameter " + std::to_string(i));
    EXPECT_TRUE(assert_close(ours[i].detach(), theirs[i].detach(), bnlab_test::default_tolerance(ours[i].scalar_type())));
  }
}

// Gives both parameter sets the gradients of steps [first, last) and steps
// both optimizers on each; with `check_each`, compares the parameters after
// every step.
template <typename Ours, typename Theirs>
void step_twins(Ours& ours, Theirs& theirs, std::vector<torch::Tensor>& ours_params,
                std::vector<torch::Tensor>& theirs_params, int first, int last, bool check_each = false) {
  for (int step = first; step < last; ++step) {
    set_grads(ours_params, theirs_params, step);
    ours.step();
    theirs.step();
    if (check_each) expect_same(ours_params, theirs_params, "step " + std::to_string(step));
  }
}

// Parameter groups: parameters 0, 2, 4 take the defaults, 1, 3, 5 `second`
// (the test fails if a step reads an option from the defaults, not its group).
template <typename Ours, typename Theirs, typename Options>
void expect_groups_keep_their_options(torch::ScalarType dtype, const Options& defaults, const Options& second) {
  auto ours_params = make_params(dtype);
  auto theirs_params = clones(ours_params);
  auto groups = [&](const std::vector<torch::Tensor>& p) {
    std::vector<torch::optim::OptimizerParamGroup> g;
    g.emplace_back(std::vector<torch::Tensor>{p[0], p[2], p[4]});
    g.emplace_back(std::vector<torch::Tensor>{p[1], p[3], p[5]}, std::make_unique<Options>(second));
    return g;
  };
  Ours ours(groups(ours_params), defaults);
  Theirs theirs(groups(theirs_params), defaults);
  step_twins(ours, theirs, ours_params, theirs_params, 0, 4);
  expect_same(ours_params, theirs_params, "after 4 steps");
}

// Names the float and double instances of a dtype-parameterized suite.
struct DtypeName {
  std::string operator()(const ::testing::TestParamInfo<torch::ScalarType>& info) const {
    return c10::toString(info.param);
  }
};

// Trains `Ours` and its torch twin `Theirs` 3 steps on twin parameters, saves
// ours, loads that into a new `Theirs` over our parameters and trains both 3
// more steps: the state (buffers, moments, step counts) must carry over, or
// the parameters diverge.
template <typename Ours, typename Theirs, typename Options>
void expect_state_dict_round_trip(const Options& options, const std::string& name) {
  auto ours_params = make_params(torch::kFloat);
  auto theirs_params = clones(ours_params);
  Ours ours(ours_params, options);
  Theirs theirs(theirs_params, options);
  step_twins(ours, theirs, ours_params, theirs_params, 0, 3);
  const auto path = (scratch_dir(name) / "optimizer.pt").string();
  torch::save(ours, path);
  Theirs resumed(ours_params, options);
  torch::load(resumed, path);
  step_twins(resumed, theirs, ours_params, theirs_params, 3, 6);
  expect_same(ours_params, theirs_params, "after resuming");
}

}  // namespace bnlab_test
