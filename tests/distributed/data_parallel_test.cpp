// Data-parallel training with bnlab's Trainer: k ranks (threads with their own
// Gloo groups) each taking a shard of every batch, against one process on the
// whole batch, step for step.
#include "bnlab/distributed/data_parallel.h"

#include "bnlab/models/mlp.h"
#include "bnlab/nn/modules/sync_batch_norm.h"
#include "bnlab/train/trainer.h"

#include "assert_close.h"
#include "ranks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <mutex>
#include <vector>

namespace {

using bnlab_test::assert_close;
using bnlab_test::run_ranks;
namespace bd = bnlab::distributed;

TEST(DataParallelShard, ContiguousSlicesCoveringTheBatchSizesDifferingByAtMostOne) {
  for (int world = 1; world <= 4; ++world) {
    for (int64_t n = 0; n <= 9; ++n) {
      const auto errors = run_ranks(world, [&](int rank, const bd::ProcessGroupPtr& group) {
        bd::DataParallel dp(std::make_shared<torch::nn::Module>(), group);
        const auto [begin, end] = dp.shard(n);
        EXPECT_EQ(begin, rank * (n / world) + std::min<int64_t>(rank, n % world));
        EXPECT_EQ(end - begin, n / world + (rank < n % world ? 1 : 0));
      });
      for (const auto& e : errors) EXPECT_EQ(e, "");
    }
  }
}

struct TrainedRun {
  std::vector<double> losses;
  std::vector<torch::Tensor> parameters;
  std::vector<torch::Tensor> buffers;
};

// A float64 tanh MLP with BatchNorm, trained for `steps` steps of `batch`
// examples with SGD + momentum; data and initialization depend only on seeds.
TrainedRun train(int64_t batch, int64_t steps, const bd::ProcessGroupPtr& group, uint64_t init_seed) {
  torch::Tensor inputs, targets;
  {
    auto gen = at::detail::createCPUGenerator(11);
    inputs = torch::randn({64, 6}, gen, torch::kDouble);
    targets = torch::randint(0, 3, {64}, gen, torch::kLong);
  }
  torch::nn::Sequential model;
  {
    static std::mutex seed_mutex;  // torch's global generator: one rank at a time
    std::lock_guard<std::mutex> lock(seed_mutex);
    torch::manual_seed(init_seed);
    model = bnlab::models::make_mlp(bnlab::models::MlpOptions(6, 3).depth(2).width(8).activation("tanh"));
  }
  model->to(torch::kDouble);
  std::shared_ptr<bd::DataParallel> dp;
  if (group) {
    bnlab::nn::convert_sync_batchnorm(model.ptr(), group);
    dp = std::make_shared<bd::DataParallel>(model.ptr(), group, bd::DataParallelOptions().bucket_bytes(256));
    dp->broadcast_state();  // ranks were seeded differently: rank 0's weights win
  }
  auto optimizer = std::make_shared<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  auto data = std::make_shared<bnlab::train::TensorBatchSource>(inputs, targets, batch, /*seed=*/5);
  bnlab::train::Trainer trainer(
      model, optimizer,
      [](const torch::Tensor& out, const torch::Tensor& target) { return torch::nn::functional::cross_entropy(out, target); },
      data, bnlab::train::TrainerOptions().steps(steps).log_every(0));
  if (dp) trainer.set_data_parallel(dp);
  TrainedRun run;
  run.losses = trainer.fit().train_loss;
  for (const auto& p : model->parameters()) run.parameters.push_back(p.detach().clone());
  for (const auto& b : model->buffers()) run.buffers.push_back(b.clone());
  return run;
}

struct DpCase {
  int world;
  int64_t batch;
};

class DataParallelTraining : public ::testing::TestWithParam<DpCase> {};

// Every rank reports the whole batch's loss, and ends with the single
// process's parameters and running statistics (float64: to 1e-10).
TEST_P(DataParallelTraining, MatchesOneProcessOnTheWholeBatchStepForStep) {
  const auto c = GetParam();
  const int64_t steps = 6;
  const TrainedRun reference = train(c.batch, steps, bd::ProcessGroupPtr(), /*init_seed=*/1);
  std::mutex mutex;
  std::vector<TrainedRun> runs(static_cast<size_t>(c.world));
  const auto errors = run_ranks(c.world, [&](int rank, const bd::ProcessGroupPtr& group) {
    TrainedRun r = train(c.batch, steps, group, /*init_seed=*/rank == 0 ? 1 : 100 + rank);
    std::lock_guard<std::mutex> lock(mutex);
    runs[static_cast<size_t>(rank)] = std::move(r);
  });
  for (const auto& e : errors) ASSERT_EQ(e, "");
  const bnlab_test::Tolerance tol{1e-10, 1e-10};
  for (int rank = 0; rank < c.world; ++rank) {
    const auto& r = runs[static_cast<size_t>(rank)];
    ASSERT_EQ(r.losses.size(), reference.losses.size());
    EXPECT_TRUE(assert_close(torch::tensor(r.losses, torch::kDouble), torch::tensor(reference.losses, torch::kDouble), tol))
        << "rank " << rank;
    ASSERT_EQ(r.parameters.size(), reference.parameters.size());
    for (size_t i = 0; i < r.parameters.size(); ++i) {
      EXPECT_TRUE(assert_close(r.parameters[i], reference.parameters[i], tol)) << "rank " << rank << " parameter " << i;
    }
    for (size_t i = 0; i < r.buffers.size(); ++i) {
      if (r.buffers[i].is_floating_point()) {
        EXPECT_TRUE(assert_close(r.buffers[i], reference.buffers[i], tol)) << "rank " << rank << " buffer " << i;
      } else {
        EXPECT_TRUE(r.buffers[i].equal(reference.buffers[i])) << "rank " << rank << " buffer " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, DataParallelTraining,
                         ::testing::Values(DpCase{2, 16}, DpCase{2, 7}, DpCase{3, 8}, DpCase{3, 2}),
                         [](const auto& info) {
                           return "world" + std::to_string(info.param.world) + "_batch" + std::to_string(info.param.batch);
                         });

}  // namespace
