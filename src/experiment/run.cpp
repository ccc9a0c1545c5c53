#include "bnlab/experiment/run.h"

#include "bnlab/data/dataset.h"
#include "bnlab/distributed/data_parallel.h"
#include "bnlab/nn/modules/sync_batch_norm.h"
#include "bnlab/io/atomic_file.h"
#include "bnlab/models/mlp.h"
#include "bnlab/optim/adam.h"
#include "bnlab/optim/sgd.h"
#include "bnlab/train/recorder.h"
#include "bnlab/train/trainer.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace bnlab::experiment {

namespace {

namespace fs = std::filesystem;

data::Dataset load_dataset(const RunConfig& c) {
  if (c.dataset == "names") {
    return data::names_dataset(c.data_path, data::NamesOptions().context(c.context).seed(c.data_seed));
  }
  if (c.dataset == "mnist") return data::mnist_dataset(c.data_path, data::MnistOptions().train_limit(c.train_limit));
  return data::synthetic_dataset(data::SyntheticClassificationOptions()
                                     .num_features(c.features)
                                     .num_classes(c.classes)
                                     .train_size(c.train_size)
                                     .val_size(c.val_size)
                                     .seed(c.data_seed));
}

std::shared_ptr<torch::optim::Optimizer> make_optimizer(const RunConfig& c, const std::vector<torch::Tensor>& params) {
  // bnlab's fused optimizers: torch::optim's arithmetic in one pass per parameter.
  if (c.optimizer == "adam") {
    return std::make_shared<bnlab::optim::Adam>(params, torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  }
  if (c.optimizer == "adamw") {
    return std::make_shared<bnlab::optim::AdamW>(params, torch::optim::AdamWOptions(c.lr).weight_decay(c.weight_decay));
  }
  return std::make_shared<bnlab::optim::SGD>(
      params, torch::optim::SGDOptions(c.lr).momentum(c.momentum).weight_decay(c.weight_decay));
}

bool has(const std::vector<std::string>& v, const char* s) { return std::find(v.begin(), v.end(), s) != v.end(); }

// Accumulates the summary's statistics one step at a time.
class SummaryBuilder {
 public:
  SummaryBuilder(double target, int64_t total_steps) : target_(target), total_(total_steps) {}

  void add(const train::StepMetrics& m) {
    losses_.push_back(m.loss);
    ema_ = losses_.size() == 1 ? m.loss : 0.95 * ema_ + 0.05 * m.loss;
    if (steps_to_target_ < 0 && std::isfinite(ema_) && ema_ <= target_) steps_to_target_ = m.step;
    if (std::isfinite(m.val_loss)) {
      val_loss_ = m.val_loss;
      val_accuracy_ = m.val_accuracy;
    }
    std::vector<const train::LayerMetrics*> acts;
    for (const auto& l : m.layers) {
      if (l.kind == train::LayerKind::kActivation) acts.push_back(&l);
    }
    if (acts.empty()) return;
    sat_first_ += acts.front()->saturation_pct;
    sat_last_ += acts.back()->saturation_pct;
    ++sat_steps_;
    if (m.step >= total_ - std::max<int64_t>(1, total_ / 10)) {
      for (const auto* a : acts) {
        dead_ += a->dead_pct;
        ++dead_n_;
      }
    }
    const double ratio = acts.back()->grad_output_norm / acts.front()->grad_output_norm;
    if (std::isfinite(ratio) && ratio > 0) {
      log_ratio_ += std::log(ratio);
      ++ratio_n_;
    }
  }

  RunSummary summary() const {
    RunSummary s;
    s.steps = static_cast<int64_t>(losses_.size());
    const size_t tail = std::max<size_t>(10, losses_.size() / 20);
    double sum = 0;
    size_t n = 0;
    for (size_t i = losses_.size() > tail ? losses_.size() - tail : 0; i < losses_.size(); ++i, ++n) sum += losses_[i];
    s.final_train_loss = n > 0 ? sum / static_cast<double>(n) : std::nan("");
    s.final_val_loss = val_loss_;
    s.final_val_accuracy = val_accuracy_;
    s.steps_to_target = steps_to_target_;
    s.saturation_first_pct = sat_steps_ > 0 ? sat_first_ / sat_steps_ : std::nan("");
    s.saturation_last_pct = sat_steps_ > 0 ? sat_last_ / sat_steps_ : std::nan("");
    s.dead_pct = dead_n_ > 0 ? dead_ / dead_n_ : std::nan("");
    s.grad_ratio_last_first = ratio_n_ > 0 ? std::exp(log_ratio_ / ratio_n_) : std::nan("");
    return s;
  }

 private:
  double target_;
  int64_t total_;
  std::vector<double> losses_;
  double ema_ = 0;
  int64_t steps_to_target_ = -1;
  double val_loss_ = std::nan("");
  double val_accuracy_ = std::nan("");
  double sat_first_ = 0, sat_last_ = 0, dead_ = 0, log_ratio_ = 0;
  double sat_steps_ = 0, dead_n_ = 0, ratio_n_ = 0;
};

// A sink that feeds the summary as steps are written.
class SummarySink : public train::MetricsSink {
 public:
  explicit SummarySink(SummaryBuilder& builder) : builder_(builder) {}
  void write(const train::StepMetrics& step) override { builder_.add(step); }

 private:
  SummaryBuilder& builder_;
};

// Feeds the summary the steps already in metrics.jsonl (a resumed run).
void replay_jsonl(const std::string& path, int64_t up_to_step, SummaryBuilder& builder) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || j["step"].get<int64_t>() > up_to_step) continue;
    train::StepMetrics m;
    m.step = j["step"].get<int64_t>();
    auto num = [](const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); };
    m.loss = num(j["loss"]);
    m.val_loss = num(j["val_loss"]);
    m.val_accuracy = num(j["val_accuracy"]);
    for (const auto& l : j["layers"]) {
      train::LayerMetrics lm;
      lm.kind = l["kind"] == "activation" ? train::LayerKind::kActivation : train::LayerKind::kParameters;
      lm.saturation_pct = num(l["saturation_pct"]);
      lm.dead_pct = num(l["dead_pct"]);
      lm.grad_output_norm = num(l["grad_output_norm"]);
      m.layers.push_back(lm);
    }
    builder.add(m);
  }
}

}  // namespace

std::string run_name(const RunConfig& c) {
  if (c.batch_norm == "before") return c.activation + "+bn";
  if (c.batch_norm == "after") return c.activation + "+bn_after";
  return c.activation;
}

nlohmann::json to_json(const RunSummary& s) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  return {{"run", s.name},
          {"activation", s.activation},
          {"batch_norm", s.batch_norm},
          {"steps", s.steps},
          {"final_train_loss", num(s.final_train_loss)},
          {"final_val_loss", num(s.final_val_loss)},
          {"final_val_accuracy", num(s.final_val_accuracy)},
          {"steps_to_target", s.steps_to_target >= 0 ? nlohmann::json(s.steps_to_target) : nlohmann::json()},
          {"saturation_first_pct", num(s.saturation_first_pct)},
          {"saturation_last_pct", num(s.saturation_last_pct)},
          {"dead_pct", num(s.dead_pct)},
          {"grad_ratio_last_first", num(s.grad_ratio_last_first)},
          {"diverged", s.diverged},
          {"interrupted", s.interrupted}};
}

RunSummary run_training(const RunConfig& config, const std::string& name) {
  validate(config);
  if (config.threads > 0) torch::set_num_threads(static_cast<int>(config.threads));
  // Launched data-parallel (torchrun, or bnlab-train --nproc): join the group
  // first, so a rank that cannot fails before any work.
  distributed::ProcessGroupPtr group;
  if (const auto launch = distributed::LaunchEnvironment::from_environment(); launch && launch->world_size > 1) {
    if (config.fuse_batch_norm) {
      throw ConfigError(
          "fuse_batch_norm: a data-parallel run synchronizes BatchNorm across ranks, which the fused BatchNormAct "
          "does not; run without --fuse-batch-norm");
    }
    distributed::GlooOptions gloo;
    gloo.timeout = std::chrono::milliseconds(static_cast<int64_t>(config.dist_timeout * 1000.0));
    group = distributed::init_gloo_process_group(*launch, gloo);
    spdlog::info("data-parallel: rank {} of {} joined", launch->rank, launch->world_size);
  }
  const bool lead = !group || group->getRank() == 0;  // writes files, records metrics
  torch::manual_seed(config.seed);
  const auto dataset = load_dataset(config);
  const int64_t in_features = dataset.vocab_size > 0 ? dataset.context : dataset.num_features;
  auto model = models::make_mlp(models::MlpOptions(in_features, dataset.num_classes)
                                    .depth(config.depth)
                                    .width(config.width)
                                    .activation(config.activation)
                                    .activation_options(nn::ActivationOptions()
                                                            .saturation_threshold(config.saturation_threshold)
                                                            .negative_slope(config.negative_slope)
                                                            .alpha(config.alpha)
                                                            .approximate(config.approximate)
                                                            .pieces(config.pieces))
                                    .batch_norm(models::batch_norm_placement_from_string(config.batch_norm))
                                    .fuse_batch_norm(config.fuse_batch_norm)
                                    .init(models::init_scheme_from_string(config.init))
                                    .gain(config.gain)
                                    .vocab_size(dataset.vocab_size)
                                    .embedding_dim(config.embedding_dim));
  std::shared_ptr<distributed::DataParallel> data_parallel;
  if (group) {
    // BatchNorm over the global batch, and every rank starting from rank 0's weights.
    nn::convert_sync_batchnorm(model.ptr(), group);
    data_parallel = std::make_shared<distributed::DataParallel>(model.ptr(), group);
    data_parallel->broadcast_state();
  }
  auto optimizer = make_optimizer(config, model->parameters());
  auto data = std::make_shared<train::TensorBatchSource>(dataset.train.inputs, dataset.train.targets,
                                                         std::min(config.batch_size, dataset.train.inputs.size(0)),
                                                         config.seed);
  const fs::path out(config.out);
  if (lead) {
    io::make_directories(config.out);
    io::write_file_atomically((out / "config.json").string(), to_json(config).dump(2) + "\n");
  }

  train::TrainerOptions options;
  options.steps(config.steps)
      .epochs(config.epochs)
      .eval_every(config.eval_every)
      .checkpoint_every(config.checkpoint_every)
      .checkpoint_path((out / "checkpoint.pt").string())
      .log_every(config.log_every)
      .lr(train::LrScheduleOptions()
              .kind(train::lr_schedule_kind_from_string(config.schedule))
              .base_lr(config.lr)
              .step_size(config.lr_step_size)
              .gamma(config.lr_gamma)
              .min_lr(config.min_lr)
              .total_steps(config.steps > 0 ? config.steps : config.epochs * data->batches_per_epoch())
              .warmup_steps(config.warmup_steps));
  train::Trainer trainer(
      model, optimizer,
      [](const torch::Tensor& out, const torch::Tensor& target) {
        return torch::nn::functional::cross_entropy(out, target);
      },
      data, options);
  trainer.set_validation(dataset.val.inputs, dataset.val.targets);
  if (data_parallel) trainer.set_data_parallel(data_parallel);

  const std::string checkpoint = (out / "checkpoint.pt").string();
  if (lead) io::remove_stale_temp_files(checkpoint);  // left by a run killed while saving
  int64_t resumed_at = -1;
  if (config.resume) {
    if (!fs::exists(checkpoint)) {
      throw ConfigError("resume: no checkpoint at " + checkpoint + " (run without --resume first)");
    }
    trainer.load_checkpoint(checkpoint);
    resumed_at = trainer.step() - 1;
    spdlog::info("resuming {} from step {}", config.out, trainer.step());
  }

  SummaryBuilder builder(config.target_loss, trainer.total_steps());
  if (resumed_at >= 0 && has(config.sinks, "jsonl")) {
    replay_jsonl((out / "metrics.jsonl").string(), resumed_at, builder);
  }
  if (!lead) {
    // Other ranks train and synchronize; rank 0 records and writes.
    const auto result = trainer.fit();
    RunSummary summary;
    summary.name = name.empty() ? run_name(config) : name;
    summary.steps = static_cast<int64_t>(result.train_loss.size());
    summary.seconds = result.seconds;
    summary.diverged = result.diverged;
    summary.interrupted = result.interrupted;
    return summary;
  }
  auto recorder = std::make_shared<train::Recorder>(
      model,
      train::RecorderOptions().histogram_every(config.histogram_every).percentile_sample(config.percentile_sample));
  train::FileSinkOptions sink_options;
  sink_options.resume_after_step = resumed_at;
  sink_options.include_timing = false;
  if (has(config.sinks, "csv")) recorder->add_sink(std::make_shared<train::CsvSink>((out / "metrics.csv").string(), sink_options));
  if (has(config.sinks, "jsonl")) {
    recorder->add_sink(std::make_shared<train::JsonlSink>((out / "metrics.jsonl").string(), sink_options));
  }
  if (has(config.sinks, "tensorboard")) {
    recorder->add_sink(std::make_shared<train::TensorBoardSink>((out / "tb").string(), sink_options));
  }
  recorder->add_sink(std::make_shared<SummarySink>(builder));
  trainer.set_recorder(recorder);

  const auto result = trainer.fit();
  recorder->close();
  RunSummary summary = builder.summary();
  summary.name = name.empty() ? run_name(config) : name;
  summary.activation = config.activation;
  summary.batch_norm = config.batch_norm;
  summary.seconds = result.seconds;
  summary.diverged = result.diverged;
  summary.interrupted = result.interrupted;
  io::write_file_atomically((out / "summary.json").string(), to_json(summary).dump(2) + "\n");
  const nlohmann::json timing{{"seconds", result.seconds},
                              {"steps_run", static_cast<int64_t>(result.train_loss.size())},
                              {"steps_per_second", result.seconds > 0 ? static_cast<double>(result.train_loss.size()) / result.seconds : 0.0}};
  io::write_file_atomically((out / "timing.json").string(), timing.dump(2) + "\n");
  return summary;
}

}  // namespace bnlab::experiment
