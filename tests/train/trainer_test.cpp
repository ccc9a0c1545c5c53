// The Trainer: schedules, deterministic data, evaluation, stopping, and
// checkpoints that resume to exactly the uninterrupted run.
#include "bnlab/train/trainer.h"

#include "bnlab/nn/modules/activation.h"
#include "bnlab/nn/modules/batch_norm.h"

#include <gmock/gmock.h>
#include "scratch_dir.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>

namespace {

namespace bn = bnlab::nn;
namespace bt = bnlab::train;

std::string temp_path(const std::string& name) {
  static const auto dir = bnlab_test::scratch_dir("trainer");
  return (dir / name).string();
}

TEST(LrSchedule, ConstantStepCosineAndWarmup) {
  bt::LrScheduleOptions o;
  o.base_lr(0.1);
  EXPECT_DOUBLE_EQ(bt::learning_rate(o, 500), 0.1);
  o.kind(bt::LrScheduleKind::kStepDecay).step_size(100).gamma(0.5);
  EXPECT_DOUBLE_EQ(bt::learning_rate(o, 99), 0.1);
  EXPECT_DOUBLE_EQ(bt::learning_rate(o, 100), 0.05);
  EXPECT_DOUBLE_EQ(bt::learning_rate(o, 250), 0.025);
  o.kind(bt::LrScheduleKind::kCosine).total_steps(200).min_lr(0.01);
  EXPECT_DOUBLE_EQ(bt::learning_rate(o, 0), 0.1);
  EXPECT_NEAR(bt::learning_rate(o, 100), 0.055, 1e-12);
  EXPECT_NEAR(bt::learning_rate(o, 200), 0.01, 1e-12);
  o.warmup_steps(10);
  EXPECT_NEAR(bt::learning_rate(o, 0), 0.1 * 0.1, 1e-9);
  EXPECT_THROW(bt::lr_schedule_kind_from_string("linear"), c10::Error);
}

TEST(TensorBatchSource, SameSeedSameBatchesAndEveryExampleOncePerEpoch) {
  auto x = torch::arange(10).view({10, 1});
  auto y = torch::arange(10);
  bt::TensorBatchSource a(x, y, 3, 42);
  bt::TensorBatchSource b(x, y, 3, 42);
  std::vector<int64_t> seen;
  for (int i = 0; i < 3; ++i) {
    auto ba = a.next();
    EXPECT_TRUE(torch::equal(ba.inputs, b.next().inputs));
    for (int64_t j = 0; j < 3; ++j) seen.push_back(ba.targets[j].item<int64_t>());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end()) << "no repeats within an epoch";
  EXPECT_EQ(a.batches_per_epoch(), 3);
  EXPECT_THROW(bt::TensorBatchSource(x, y, 11, 0), c10::Error);
}

struct Run {
  torch::nn::Sequential net;
  std::shared_ptr<torch::optim::Adam> optimizer;
  std::shared_ptr<bt::TensorBatchSource> data;
  std::shared_ptr<bt::MemorySink> sink;
  std::shared_ptr<bt::Recorder> recorder;
  std::unique_ptr<bt::Trainer> trainer;
};

Run make_run(int64_t steps, const std::string& checkpoint, int64_t checkpoint_every) {
  torch::manual_seed(11);
  Run r;
  r.net = torch::nn::Sequential(torch::nn::Linear(6, 16), bn::BatchNorm1d(16), bn::Tanh(), torch::nn::Dropout(0.2),
                                torch::nn::Linear(16, 3));
  r.optimizer = std::make_shared<torch::optim::Adam>(r.net->parameters(), torch::optim::AdamOptions(0.01));
  auto gen = at::detail::createCPUGenerator(5);
  auto x = torch::randn({200, 6}, gen);
  auto y = torch::randint(3, {200}, gen);
  r.data = std::make_shared<bt::TensorBatchSource>(x, y, 32, 7);
  r.sink = std::make_shared<bt::MemorySink>();
  r.recorder = std::make_shared<bt::Recorder>(r.net);
  r.recorder->add_sink(r.sink);
  r.trainer = std::make_unique<bt::Trainer>(
      r.net, r.optimizer,
      [](const torch::Tensor& out, const torch::Tensor& t) { return torch::nn::functional::cross_entropy(out, t); },
      r.data,
      bt::TrainerOptions().steps(steps).checkpoint_path(checkpoint).checkpoint_every(checkpoint_every).log_every(0)
          .eval_every(10).lr(bt::LrScheduleOptions().kind(bt::LrScheduleKind::kCosine).base_lr(0.01).total_steps(steps)));
  r.trainer->set_validation(x.narrow(0, 0, 50), y.narrow(0, 0, 50));
  r.trainer->set_recorder(r.recorder);
  return r;
}

// Everything but the timings.
void expect_same_metrics(const bt::StepMetrics& a, const bt::StepMetrics& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.loss, b.loss) << "step " << a.step;
  EXPECT_EQ(a.lr, b.lr);
  EXPECT_EQ(a.grad_norm, b.grad_norm);
  EXPECT_TRUE((std::isnan(a.val_loss) && std::isnan(b.val_loss)) || a.val_loss == b.val_loss);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t j = 0; j < a.layers.size(); ++j) {
    for (const auto& c : bt::layer_metric_columns()) {
      const double u = c.get(a.layers[j]);
      const double v = c.get(b.layers[j]);
      EXPECT_TRUE((std::isnan(u) && std::isnan(v)) || u == v)
          << "step " << a.step << " " << a.layers[j].name << " " << c.name << ": " << u << " vs " << v;
    }
  }
}

TEST(Trainer, ReleaseGradientsLeavesEveryOptimizedParameterWithoutAGradient) {
  torch::nn::Linear a(3, 2), b(2, 1);
  auto frozen = torch::ones({2}, torch::requires_grad());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(a->parameters());
  groups.emplace_back(b->parameters(), std::make_unique<torch::optim::SGDOptions>(0.5));
  torch::optim::SGD sgd(std::move(groups), torch::optim::SGDOptions(0.1));
  (b(a(torch::randn({4, 3}))).sum() + frozen.sum()).backward();
  bt::release_gradients(sgd);
  for (const auto& p : a->parameters()) EXPECT_FALSE(p.grad().defined());
  for (const auto& p : b->parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_TRUE(frozen.grad().defined()) << "a tensor the optimizer does not hold keeps its gradient";
}

TEST(Trainer, ResumingFromACheckpointEqualsTheUninterruptedRun) {
  const auto ckpt = temp_path("resume.ckpt");
  auto full = make_run(40, "", 0);
  auto full_result = full.trainer->fit();
  EXPECT_EQ(full_result.last_step, 39);
  full.recorder->close();
  auto reference = full.sink->steps();
  ASSERT_EQ(reference.size(), 40U);

  // The same 40-step run, stopped after step 19 (as a kill after the
  // checkpoint would), then everything dropped.
  {
    auto part = make_run(40, ckpt, 20);
    auto* trainer = part.trainer.get();
    trainer->set_step_callback([trainer](int64_t step, double) {
      if (step == 19) trainer->request_stop();
    });
    auto r = part.trainer->fit();
    EXPECT_TRUE(r.interrupted);
    EXPECT_EQ(r.last_step, 19);
    part.recorder->close();
  }
  auto resumed = make_run(40, ckpt, 0);
  resumed.trainer->load_checkpoint(ckpt);
  EXPECT_EQ(resumed.trainer->step(), 20);
  auto result = resumed.trainer->fit();
  EXPECT_EQ(result.first_step, 20);
  resumed.recorder->close();
  auto after = resumed.sink->steps();
  ASSERT_EQ(after.size(), 20U);
  for (size_t i = 0; i < after.size(); ++i) expect_same_metrics(after[i], reference[20 + i]);
}

TEST(Trainer, StopRequestWritesACheckpointAtTheNextStep) {
  const auto ckpt = temp_path("stop.ckpt");
  std::filesystem::remove(ckpt);
  auto run = make_run(30, ckpt, 0);
  run.trainer->request_stop();
  auto result = run.trainer->fit();
  EXPECT_TRUE(result.interrupted);
  EXPECT_EQ(result.last_step, 0);
  ASSERT_TRUE(std::filesystem::exists(ckpt));
  auto again = make_run(30, "", 0);
  again.trainer->load_checkpoint(ckpt);
  EXPECT_EQ(again.trainer->step(), 1);
}

TEST(Trainer, InterruptHandlerStopsTheLoop) {
  bt::install_interrupt_handler();
  auto run = make_run(30, "", 0);
  std::raise(SIGINT);
  auto result = run.trainer->fit();
  bt::clear_interrupt();
  EXPECT_TRUE(result.interrupted);
  EXPECT_EQ(result.train_loss.size(), 1U);
}

TEST(Trainer, LearnsAndEvaluates) {
  auto run = make_run(120, "", 0);
  auto result = run.trainer->fit();
  ASSERT_EQ(result.train_loss.size(), 120U);
  EXPECT_FALSE(result.val_loss.empty());
  EXPECT_EQ(result.val_loss.back().first, 119) << "the last step is evaluated";
  EXPECT_LT(result.val_loss.back().second, result.val_loss.front().second);
  EXPECT_GE(result.val_accuracy.back().second, 0.0);
  run.recorder->close();
  auto steps = run.sink->steps();
  EXPECT_TRUE(std::isfinite(steps[9].val_loss));
  EXPECT_TRUE(std::isnan(steps[8].val_loss));
  // Evaluation forwards do not overwrite the step's activation statistics.
  for (const auto& l : steps[9].layers) {
    if (l.kind == bt::LayerKind::kBatchNorm) {
      EXPECT_TRUE(std::isfinite(l.bn_batch_var)) << "train-mode statistics";
    }
  }
}

TEST(Trainer, CorruptCheckpointIsAClearError) {
  const auto ckpt = temp_path("corrupt.ckpt");
  {
    std::ofstream out(ckpt);
    out << "not a checkpoint";
  }
  auto run = make_run(10, "", 0);
  try {
    run.trainer->load_checkpoint(ckpt);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("cannot load checkpoint " + ckpt));
  }
  EXPECT_EQ(run.trainer->step(), 0) << "a failed load changes nothing";
}

TEST(Trainer, DivergenceStops) {
  torch::nn::Sequential net(torch::nn::Linear(2, 1));
  auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), 1e30);
  auto data = std::make_shared<bt::TensorBatchSource>(torch::randn({8, 2}) * 1e10, torch::randn({8, 1}), 8, 0);
  bt::Trainer trainer(net, opt,
                      [](const torch::Tensor& o, const torch::Tensor& t) { return (o - t).pow(2).mean(); }, data,
                      bt::TrainerOptions().steps(50).log_every(0));
  auto result = trainer.fit();
  EXPECT_TRUE(result.diverged);
  EXPECT_LT(result.train_loss.size(), 50U);
}

}  // namespace
