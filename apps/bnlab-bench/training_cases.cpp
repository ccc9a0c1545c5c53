// Whole training steps: the recorder's overhead, and C++ against eager Python.
#include "bnlab-bench/cases.h"

#include "bnlab-bench/child_process.h"

#include <bnlab/models/mlp.h>
#include <bnlab/nn/modules/activation.h>
#include <bnlab/nn/modules/batch_norm.h>
#include <bnlab/nn/probe.h>
#include <bnlab/optim/sgd.h>
#include <bnlab/train/recorder.h>
#include <bnlab/train/sink.h>
#include <bnlab/train/trainer.h>

#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

namespace bnlab::bench {

namespace {

// A training loop over pre-made batches; with a recorder when given one.
// `Optimizer` is bnlab::optim::SGD, as in bnlab-train, which measures the
// recorded parameter statistics in its own pass.
struct TrainLoop {
  using Optimizer = bnlab::optim::SGD;
  torch::nn::Sequential model;
  std::unique_ptr<Optimizer> optimizer;
  std::shared_ptr<train::Recorder> recorder;
  torch::Tensor inputs, targets;
  int64_t batch = 32;
  double lr = 0.1;
  int64_t step = 0;

  TrainLoop(torch::nn::Sequential m, torch::Tensor x, torch::Tensor y, int64_t batch_size, double learning_rate,
            double momentum)
      : model(std::move(m)), inputs(std::move(x)), targets(std::move(y)), batch(batch_size), lr(learning_rate) {
    optimizer = std::make_unique<Optimizer>(model->parameters(), torch::optim::SGDOptions(lr).momentum(momentum));
  }

  void run_step() {
    const int64_t batches = inputs.size(0) / batch;
    const int64_t first = (step % batches) * batch;
    if (recorder) recorder->begin_step(step);
    auto loss = torch::nn::functional::cross_entropy(model->forward(inputs.narrow(0, first, batch)),
                                                     targets.narrow(0, first, batch));
    train::release_gradients(*optimizer);  // as the Trainer does
    loss.backward();
    optimizer->step();
    if (recorder) recorder->end_step(loss, lr, batch);
    ++step;
  }

  // Every metric on every step, histograms every 100, into all three sinks.
  void record_into(const std::string& dir) {
    std::filesystem::create_directories(dir);
    recorder = std::make_shared<train::Recorder>(model, train::RecorderOptions().histogram_every(100));
    recorder->add_sink(std::make_shared<train::CsvSink>(dir + "/metrics.csv"));
    recorder->add_sink(std::make_shared<train::JsonlSink>(dir + "/metrics.jsonl"));
    recorder->add_sink(std::make_shared<train::TensorBoardSink>(dir + "/tb"));
    recorder->take_update_statistics_from(*optimizer);
  }
};

// CPU seconds used so far by this process's threads named `name` (the
// recorder names its writer thread "bnlab-writer"), from /proc; NaN where
// /proc does not say (not Linux, or no such thread).
double threads_cpu_seconds(const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code error;
  double total = 0.0;
  bool found = false;
  for (const auto& task : fs::directory_iterator("/proc/self/task", error)) {
    std::ifstream comm(task.path() / "comm");
    std::string thread_name;
    if (!std::getline(comm, thread_name) || thread_name != name) continue;
    std::ifstream schedstat(task.path() / "schedstat");  // first field: ns on a CPU
    unsigned long long ns = 0;
    if (schedstat >> ns) {
      total += static_cast<double>(ns) * 1e-9;
      found = true;
    }
  }
  return found ? total : std::nan("");
}

// Karpathy's makemore MLP: embedding 27×10 of 3 characters, 5 × [Linear(100,
// no bias) → BatchNorm1d → Tanh], Linear → BatchNorm1d(27).
torch::nn::Sequential makemore_mlp() {
  torch::nn::Sequential net;
  net->push_back(torch::nn::Embedding(27, 10));
  net->push_back(torch::nn::Flatten());
  int64_t in = 30;
  for (int i = 0; i < 5; ++i) {
    net->push_back(torch::nn::Linear(torch::nn::LinearOptions(in, 100).bias(false)));
    net->push_back(nn::BatchNorm1d(100));
    net->push_back(nn::Tanh());
    in = 100;
  }
  net->push_back(torch::nn::Linear(torch::nn::LinearOptions(100, 27).bias(false)));
  net->push_back(nn::BatchNorm1d(27));
  return net;
}

Comparison recorder_overhead(const BenchConfig& config) {
  const int64_t examples = 32 * 256;
  torch::manual_seed(0);
  auto tokens = torch::randint(0, 27, {examples, 3});
  auto next = torch::randint(0, 27, {examples});
  torch::manual_seed(1);
  TrainLoop with(makemore_mlp(), tokens, next, 32, 0.1, 0.0);
  torch::manual_seed(1);
  TrainLoop without(makemore_mlp(), tokens, next, 32, 0.1, 0.0);
  with.record_into(config.work_dir + "/recorder_overhead");
  const double writer_start = threads_cpu_seconds("bnlab-writer");
  auto c = compare("makemore MLP step, recording every layer",
                   {"with bnlab::train::Recorder (CSV + JSONL + TensorBoard)", timed([&] { with.run_step(); })},
                   {"the same loop without it", timed([&] { without.run_step(); })}, 1.05, config.interleave);
  with.recorder->flush();  // every recorded step processed, so its writer time is all counted
  // The writer's time is not in the ratio when another core is free for it;
  // on a machine whose cores are all busy (a BLAS or OpenMP pool as wide as
  // the machine), the training threads pay for it.
  const double writer_s = threads_cpu_seconds("bnlab-writer") - writer_start;
  with.recorder->close();
  c.extra = fmt::format("{:.0f} µs per step recorded, {:.0f} µs without", c.ours_s * 1e6, c.theirs_s * 1e6);
  if (std::isfinite(writer_s) && with.step > 0) {
    c.extra += fmt::format("; the writer thread used {:.0f} µs of CPU per step",
                           writer_s / static_cast<double>(with.step) * 1e6);
  }
  return c;
}

// bnlab-train's MLP step (its default model, or with --fuse-batch-norm) against eager PyTorch's.
Comparison python_step(const BenchConfig& config, bool fused) {
  // bnlab-train's default model and data sizes (see `bnlab-train --help`).
  const int64_t depth = 6, width = 128, features = 32, classes = 10, batch = 128, examples = 8192;
  const double lr = 0.05, momentum = 0.9;
  torch::manual_seed(0);
  auto x = torch::randn({examples, features});
  auto y = torch::randint(0, classes, {examples});
  TrainLoop ours(
      models::make_mlp(models::MlpOptions(features, classes).depth(depth).width(width).fuse_batch_norm(fused)), x, y,
      batch, lr, momentum);
  ours.record_into(config.work_dir + (fused ? "/python_step_fused" : "/python_step"));
  Comparison c;
  c.name = fused ? "bnlab-train --fuse-batch-norm MLP step vs eager PyTorch" : "bnlab-train MLP step vs eager PyTorch";
  try {
    std::vector<std::string> argv = {config.python,        config.python_script,      "--depth",
                                     std::to_string(depth), "--width",                  std::to_string(width),
                                     "--features",          std::to_string(features),   "--classes",
                                     std::to_string(classes), "--batch",                std::to_string(batch),
                                     "--examples",          std::to_string(examples),   "--lr",
                                     std::to_string(lr),    "--momentum",               std::to_string(momentum),
                                     "--threads",           std::to_string(torch::get_num_threads())};
    ChildProcess python(argv);
    const std::string ready = python.receive(300);
    if (ready.rfind("ready", 0) != 0) throw std::runtime_error("unexpected first line from python: " + ready);
    Side theirs = [&](int64_t reps) {
      python.send("run " + std::to_string(reps));
      const std::string answer = python.receive(600);
      try {
        return std::stod(answer);
      } catch (const std::exception&) {
        throw std::runtime_error("python answered '" + answer + "'");
      }
    };
    c = interleave(c.name, timed([&] { ours.run_step(); }), theirs, config.interleave);
    python.send("quit");
    c.extra = fmt::format("PyTorch {} (Python, {})", ready.substr(6), config.python);
  } catch (const std::exception& e) {
    c.error = e.what();
  }
  ours.recorder->close();
  c.ours = fused ? "C++ step with the recorder (BatchNormAct blocks, CSV + JSONL + TensorBoard)"
                 : "C++ step with the recorder (bnlab modules, CSV + JSONL + TensorBoard)";
  c.theirs = "the same model in eager PyTorch (Python), no recording";
  c.goal = 0.5;
  return c;
}

// The 15/50/85th percentiles of an activation's sample of `n` values, as the
// recorder's writer computes them for every activation layer on every step,
// against torch::quantile. Each call gets another of 64 inputs: on one input
// repeated, the branch predictor learns the selection's branches, which made
// an earlier nth_element version look 6x faster than it was.
Comparison percentiles(int64_t n, const BenchConfig& config) {
  torch::manual_seed(0);
  const int64_t inputs = 64;
  auto values = torch::randn({inputs, n});
  const std::vector<double> qs{0.15, 0.50, 0.85};
  const auto q = torch::tensor({0.15, 0.50, 0.85}, torch::kFloat);
  int64_t next_ours = 0, next_theirs = 0;
  double sink = 0.0;  // keeps the results alive
  auto ours = timed([&] {
    const float* row = values.data_ptr<float>() + (next_ours++ % inputs) * n;
    sink += nn::sample_quantiles(row, n, qs)[1];
  });
  auto theirs = timed([&] { sink += torch::quantile(values[next_theirs++ % inputs], q)[1].item<double>(); });
  auto c = compare(fmt::format("3 percentiles of {} values (recorder's writer)", n),
                   {"bnlab::nn::sample_quantiles", ours}, {"torch::quantile", theirs}, /*goal=*/0.0, config.interleave);
  if (!std::isfinite(sink)) c.error = "non-finite percentiles";
  return c;
}

}  // namespace

std::vector<Case> training_cases(const BenchConfig& config) {
  return {{"Percentiles/458", [=] { return percentiles(458, config); }},
          {"Percentiles/1024", [=] { return percentiles(1024, config); }},
          {"Recorder/makemore_mlp", [=] { return recorder_overhead(config); }},
          {"TrainStep/cpp_vs_python", [=] { return python_step(config, false); }},
          {"TrainStep/cpp_fused_vs_python", [=] { return python_step(config, true); }}};
}

}  // namespace bnlab::bench
