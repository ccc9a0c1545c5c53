// bnlab::nn::SyncBatchNorm with k ranks, each holding a slice of one batch,
// against bnlab's single-process BatchNorm (itself checked against PyTorch)
// on the whole batch; convert_sync_batchnorm; errors and faults.
#include "bnlab/nn/modules/sync_batch_norm.h"

#include "bnlab/nn/modules/activation.h"
#include "bnlab/nn/modules/batch_norm.h"

#include "assert_close.h"
#include "errors.h"
#include "ranks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

namespace {

using bnlab_test::assert_close;
using bnlab_test::run_ranks;
using ::testing::HasSubstr;
namespace bn = bnlab::nn;

// float64 throughout: the merge of per-rank statistics must agree with the
// single-pass statistics of the whole batch to 1e-10.
const bnlab_test::Tolerance kExact{0.0, 1e-10};

struct SyncCase {
  std::vector<int64_t> shape;       // of the whole batch
  std::vector<int64_t> rows;        // examples per rank (sums to shape[0])
  c10::optional<double> momentum;
  std::string label;
};

std::string case_name(const ::testing::TestParamInfo<SyncCase>& info) { return info.param.label; }

class SyncBatchNormMatchesBatchNorm : public ::testing::TestWithParam<SyncCase> {};

// The whole batch through BatchNorm (2 training steps, then eval) and each
// rank's slice through SyncBatchNorm: outputs, ∂L/∂x, ∂L/∂γ and ∂L/∂β summed
// over ranks, running statistics and the step counter all equal.
TEST_P(SyncBatchNormMatchesBatchNorm, OutputsGradientsAndRunningStatistics) {
  const auto& c = GetParam();
  const int world = static_cast<int>(c.rows.size());
  const int64_t channels = c.shape[1];
  torch::manual_seed(7);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const int steps = 2;
  std::vector<torch::Tensor> inputs, grads;
  for (int s = 0; s < steps; ++s) {
    inputs.push_back(torch::randn(c.shape, opts) * 3 + 1.5);
    grads.push_back(torch::randn(c.shape, opts));
  }
  const auto weight0 = torch::rand({channels}, opts) + 0.5;
  const auto bias0 = torch::randn({channels}, opts);
  const auto eval_input = torch::randn(c.shape, opts);

  auto options = bn::BatchNormOptions(channels).momentum(c.momentum);
  auto init = [&](torch::Tensor& w, torch::Tensor& b) {
    torch::NoGradGuard no_grad;
    w.copy_(weight0);
    b.copy_(bias0);
  };
  std::shared_ptr<torch::nn::Module> reference_module;
  std::function<torch::Tensor(const torch::Tensor&)> reference_forward;
  if (c.shape.size() == 4) {
    bn::BatchNorm2d m(options);
    m->to(torch::kDouble);
    init(m->weight, m->bias);
    reference_module = m.ptr();
    reference_forward = [m](const torch::Tensor& x) mutable { return m->forward(x); };
  } else {
    bn::BatchNorm1d m(options);
    m->to(torch::kDouble);
    init(m->weight, m->bias);
    reference_module = m.ptr();
    reference_forward = [m](const torch::Tensor& x) mutable { return m->forward(x); };
  }
  std::vector<torch::Tensor> ref_out, ref_grad_in, ref_grad_w, ref_grad_b;
  for (int s = 0; s < steps; ++s) {
    auto x = inputs[s].clone().requires_grad_();
    reference_module->zero_grad();
    auto y = reference_forward(x);
    y.backward(grads[s]);
    ref_out.push_back(y.detach());
    ref_grad_in.push_back(x.grad());
    const auto params = reference_module->named_parameters();
    ref_grad_w.push_back(params["weight"].grad().clone());
    ref_grad_b.push_back(params["bias"].grad().clone());
  }
  const auto buffers = reference_module->named_buffers();
  reference_module->eval();
  const auto ref_eval = reference_forward(eval_input).detach();

  std::vector<int64_t> begin(static_cast<size_t>(world), 0);
  std::partial_sum(c.rows.begin(), c.rows.end() - 1, begin.begin() + 1);
  std::mutex mutex;
  std::vector<std::vector<torch::Tensor>> grad_w(steps), grad_b(steps);
  const auto errors = run_ranks(world, [&](int rank, const bnlab::distributed::ProcessGroupPtr& group) {
    bn::SyncBatchNorm sync(bn::SyncBatchNormOptions(channels).momentum(c.momentum).process_group(group));
    sync->to(torch::kDouble);
    init(sync->weight, sync->bias);
    const int64_t b = begin[static_cast<size_t>(rank)];
    const int64_t n = c.rows[static_cast<size_t>(rank)];
    for (int s = 0; s < steps; ++s) {
      auto x = inputs[s].narrow(0, b, n).clone().requires_grad_();
      sync->zero_grad();
      auto y = sync->forward(x);
      y.backward(grads[s].narrow(0, b, n));
      EXPECT_TRUE(assert_close(y.detach(), ref_out[s].narrow(0, b, n), kExact)) << "rank " << rank << " step " << s;
      EXPECT_TRUE(assert_close(x.grad(), ref_grad_in[s].narrow(0, b, n), kExact)) << "rank " << rank << " step " << s;
      std::lock_guard<std::mutex> lock(mutex);
      grad_w[s].push_back(sync->weight.grad().clone());
      grad_b[s].push_back(sync->bias.grad().clone());
    }
    EXPECT_TRUE(assert_close(sync->running_mean, buffers["running_mean"], kExact)) << "rank " << rank;
    EXPECT_TRUE(assert_close(sync->running_var, buffers["running_var"], kExact)) << "rank " << rank;
    EXPECT_EQ(sync->num_batches_tracked.item<int64_t>(), buffers["num_batches_tracked"].item<int64_t>());
    sync->eval();  // running statistics, no communication
    const auto x = eval_input.narrow(0, b, n);
    EXPECT_TRUE(assert_close(sync->forward(x), ref_eval.narrow(0, b, n), kExact)) << "rank " << rank;
  });
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
  // Each rank's ∂L/∂γ and ∂L/∂β are its share: they sum to the whole batch's.
  for (int s = 0; s < steps; ++s) {
    ASSERT_EQ(grad_w[s].size(), c.rows.size());
    EXPECT_TRUE(assert_close(torch::stack(grad_w[s]).sum(0), ref_grad_w[s], kExact)) << "step " << s;
    EXPECT_TRUE(assert_close(torch::stack(grad_b[s]).sum(0), ref_grad_b[s], kExact)) << "step " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Ranks, SyncBatchNormMatchesBatchNorm,
    ::testing::Values(SyncCase{{8, 5}, {4, 4}, 0.1, "two_even"},
                      SyncCase{{9, 5}, {7, 2}, 0.1, "two_uneven"},
                      SyncCase{{6, 5}, {0, 6}, 0.1, "two_first_empty"},
                      SyncCase{{10, 4, 3}, {3, 3, 4}, 0.1, "three_ncl"},
                      SyncCase{{7, 3}, {5, 0, 2}, c10::nullopt, "three_one_empty_cumulative"},
                      SyncCase{{5, 3, 2, 3}, {1, 1, 3}, 0.3, "three_nchw"},
                      SyncCase{{2, 4}, {1, 0, 1}, 0.1, "three_one_row_each"}),
    case_name);

TEST(SyncBatchNorm, GlobalBatchOfOneValueIsAnErrorOnEveryRank) {
  const auto errors = run_ranks(2, [](int rank, const bnlab::distributed::ProcessGroupPtr& group) {
    bn::SyncBatchNorm sync(bn::SyncBatchNormOptions(3).process_group(group));
    sync->forward(torch::randn({rank == 0 ? 1 : 0, 3}));
  });
  for (const auto& e : errors) EXPECT_THAT(e, HasSubstr("expected more than 1 value per channel across all ranks"));
}

TEST(SyncBatchNorm, WrongChannelsIsAnError) {
  bn::SyncBatchNorm sync(3);
  EXPECT_THAT(bnlab_test::error_of([&] { sync->forward(torch::randn({4, 5})); }),
              HasSubstr("expected input with 3 channels (dim 1, num_features), got 5"));
}

TEST(SyncBatchNorm, WithoutAGroupItIsBatchNorm) {
  torch::manual_seed(3);
  bn::SyncBatchNorm sync(4);
  bn::BatchNorm1d plain(4);
  const auto x = torch::randn({6, 4, 2});
  EXPECT_TRUE(assert_close(sync->forward(x), plain->forward(x)));
  EXPECT_TRUE(assert_close(sync->running_var, plain->running_var));
}

TEST(SyncBatchNorm, SameNamesAsBatchNorm) {
  bn::SyncBatchNorm sync(4);
  bn::BatchNorm2d plain(4);
  std::vector<std::string> a, b;
  for (const auto& p : sync->named_parameters()) a.push_back(p.key());
  for (const auto& p : sync->named_buffers()) a.push_back(p.key());
  for (const auto& p : plain->named_parameters()) b.push_back(p.key());
  for (const auto& p : plain->named_buffers()) b.push_back(p.key());
  EXPECT_EQ(a, b);
}

TEST(ConvertSyncBatchNorm, SwapsLayersInSequentialAndModuleListKeepingTheirTensors) {
  torch::nn::Sequential seq(torch::nn::Linear(4, 3), bn::BatchNorm1d(3), bn::Tanh());
  torch::nn::ModuleList list(bn::BatchNorm1d(3));
  seq->register_module("list", list);
  auto* old_bn = seq[1]->as<bn::BatchNorm1dImpl>();
  auto* old_inner = list->ptr(0)->as<bn::BatchNorm1dImpl>();
  ASSERT_NE(old_bn, nullptr);
  const auto weight = old_bn->weight;
  const auto running_var = old_bn->running_var;
  const auto inner_mean = old_inner->running_mean;
  seq->eval();
  const auto returned = bn::convert_sync_batchnorm(seq.ptr(), bnlab::distributed::ProcessGroupPtr());
  EXPECT_EQ(returned.get(), seq.ptr().get());
  auto* sync = seq[1]->as<bn::SyncBatchNormImpl>();
  ASSERT_NE(sync, nullptr) << "the Sequential's entry was not swapped";
  EXPECT_TRUE(sync->weight.is_same(weight));
  EXPECT_TRUE(sync->running_var.is_same(running_var));
  EXPECT_FALSE(sync->is_training());
  EXPECT_NE(seq->named_modules()["1"]->as<bn::SyncBatchNormImpl>(), nullptr) << "the registry still holds the old layer";
  auto* inner = list->ptr(0)->as<bn::SyncBatchNormImpl>();
  ASSERT_NE(inner, nullptr);
  EXPECT_TRUE(inner->running_mean.is_same(inner_mean));
  // The Sequential's forward now runs the swapped layer.
  seq->train();
  const auto before = sync->num_batches_tracked.item<int64_t>();
  seq->forward(torch::randn({5, 4}));
  EXPECT_EQ(sync->num_batches_tracked.item<int64_t>(), before + 1);
}

TEST(ConvertSyncBatchNorm, ABatchNormItselfBecomesASyncBatchNorm) {
  bn::BatchNorm2d plain(bn::BatchNorm2dOptions(3).affine(false));
  auto converted = bn::convert_sync_batchnorm(plain.ptr(), bnlab::distributed::ProcessGroupPtr());
  auto* sync = dynamic_cast<bn::SyncBatchNormImpl*>(converted.get());
  ASSERT_NE(sync, nullptr);
  EXPECT_FALSE(sync->weight.defined());
  EXPECT_TRUE(sync->running_mean.is_same(plain->running_mean));
}

struct HoldsItsOwnBatchNorm : torch::nn::Module {
  HoldsItsOwnBatchNorm() : norm(register_module("norm", bn::BatchNorm1d(2))) {}
  torch::Tensor forward(const torch::Tensor& x) { return norm(x); }
  bn::BatchNorm1d norm;
};

TEST(ConvertSyncBatchNorm, ABatchNormHeldByACustomModuleIsAnErrorNamingIt) {
  torch::nn::Sequential seq(torch::nn::Linear(2, 2));
  seq->push_back("block", std::make_shared<HoldsItsOwnBatchNorm>());
  EXPECT_THAT(bnlab_test::error_of([&] { bn::convert_sync_batchnorm(seq.ptr(), bnlab::distributed::ProcessGroupPtr()); }),
              HasSubstr("cannot swap block.norm"));
}

// Faults: a rank that never joins, and one that leaves, end the others with
// an error in bounded time.
TEST(SyncBatchNormFaults, ARankThatNeverJoinsFailsTheOthersWithinTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  const auto errors = run_ranks(
      2, [](int, const bnlab::distributed::ProcessGroupPtr&) {}, std::chrono::milliseconds(1500), /*absent=*/{1});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_THAT(errors[0], HasSubstr("rank 0 of 2 could not connect to the other ranks within 1.5 s"));
  EXPECT_LT(seconds, 30.0);
}

TEST(SyncBatchNormFaults, ARankThatLeavesFailsTheNextCollectiveWithAClearError) {
  const auto start = std::chrono::steady_clock::now();
  const auto errors = run_ranks(
      2,
      [](int rank, const bnlab::distributed::ProcessGroupPtr& group) {
        bn::SyncBatchNorm sync(bn::SyncBatchNormOptions(3).process_group(group));
        sync->forward(torch::randn({4, 3}));  // both ranks
        if (rank == 1) return;                // leaves: its group is destroyed
        for (int i = 0; i < 3; ++i) sync->forward(torch::randn({4, 3}));
      },
      std::chrono::milliseconds(2000), /*absent=*/{}, /*barrier_at_end=*/false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(errors[1], "");
  EXPECT_THAT(errors[0], HasSubstr("SyncBatchNorm forward (all_gather) failed on rank 0 of 2"));
  EXPECT_LT(seconds, 30.0);
}

}  // namespace
