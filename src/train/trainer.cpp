#include "bnlab/train/trainer.h"

#include "bnlab/distributed/data_parallel.h"
#include "bnlab/io/atomic_file.h"
#include "bnlab/optim/update_statistics.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <spdlog/spdlog.h>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <unistd.h>

namespace bnlab::train {

namespace {

std::atomic<int> g_interrupts{0};

extern "C" void handle_interrupt(int) {
  if (g_interrupts.fetch_add(1) >= 1) std::_Exit(130);  // second Ctrl-C: leave now
}

constexpr int64_t kCheckpointFormat = 1;

// A line that updates in place on a terminal; periodic log lines otherwise.
class Progress {
 public:
  Progress(int64_t first, int64_t total, int64_t every)
      : first_(first), total_(total), every_(every), tty_(::isatty(STDERR_FILENO) != 0),
        start_(std::chrono::steady_clock::now()) {}

  void update(int64_t step, double loss, bool force = false) {
    if (every_ <= 0) return;
    const int64_t done = step + 1 - first_;
    const bool due = force || step + 1 == total_ || (tty_ ? done % std::max<int64_t>(1, every_ / 10) == 0 : (step + 1) % every_ == 0);
    if (!due) return;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - step - 1) / rate : 0.0;
    const std::string line = fmt::format("step {:>7}/{}  loss {:.4f}  {:.1f} steps/s  ETA {:.0f}s", step + 1,
                                         total_, loss, rate, eta);
    if (tty_) {
      const int width = 30;
      const int filled = static_cast<int>(width * static_cast<double>(step + 1) / static_cast<double>(std::max<int64_t>(total_, 1)));
      std::fprintf(stderr, "\r[%s%s] %s", std::string(static_cast<size_t>(filled), '#').c_str(),
                   std::string(static_cast<size_t>(width - filled), '.').c_str(), line.c_str());
      std::fflush(stderr);
      line_open_ = true;
    } else {
      spdlog::info("{}", line);
    }
  }

  // Ends the live line (so what follows starts on its own line).
  void finish() {
    if (line_open_) std::fprintf(stderr, "\n");
    line_open_ = false;
  }

 private:
  int64_t first_;
  int64_t total_;
  int64_t every_;
  bool tty_;
  bool line_open_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

void release_gradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
    }
  }
}

void install_interrupt_handler() {
  std::signal(SIGINT, handle_interrupt);
  std::signal(SIGTERM, handle_interrupt);
}

bool interrupt_requested() { return g_interrupts.load() > 0; }

void clear_interrupt() { g_interrupts.store(0); }

Trainer::Trainer(Model model, std::shared_ptr<torch::optim::Optimizer> optimizer, LossFn loss,
                 std::shared_ptr<BatchSource> train_data, TrainerOptions options)
    : model_(std::move(model)),
      optimizer_(std::move(optimizer)),
      loss_(std::move(loss)),
      data_(std::move(train_data)),
      options_(std::move(options)) {
  TORCH_CHECK(model_.module != nullptr && model_.forward != nullptr, "bnlab::train::Trainer: expected a model");
  TORCH_CHECK(optimizer_ != nullptr && loss_ != nullptr && data_ != nullptr,
              "bnlab::train::Trainer: expected an optimizer, a loss function and training data");
  TORCH_CHECK(options_.steps() > 0 || (options_.epochs() > 0 && data_->batches_per_epoch() > 0),
              "bnlab::train::Trainer: expected steps > 0, or epochs > 0 with data that has epochs; got steps=",
              options_.steps(), ", epochs=", options_.epochs());
}

int64_t Trainer::total_steps() const {
  return options_.steps() > 0 ? options_.steps() : options_.epochs() * data_->batches_per_epoch();
}

void Trainer::set_validation(torch::Tensor inputs, torch::Tensor targets) {
  TORCH_CHECK(inputs.size(0) == targets.size(0), "bnlab::train::Trainer::set_validation: expected as many "
              "targets as inputs, got ", inputs.size(0), " and ", targets.size(0));
  val_inputs_ = std::move(inputs);
  val_targets_ = std::move(targets);
}

void Trainer::set_recorder(std::shared_ptr<Recorder> recorder) {
  recorder_ = std::move(recorder);
  // A bnlab fused optimizer measures the parameter statistics in its own pass.
  auto* reporting = dynamic_cast<optim::ReportsUpdateStatistics*>(optimizer_.get());
  if (recorder_ && reporting != nullptr) recorder_->take_update_statistics_from(*reporting);
}

void Trainer::request_stop() { stop_ = true; }

void Trainer::set_data_parallel(std::shared_ptr<distributed::DataParallel> data_parallel) {
  data_parallel_ = std::move(data_parallel);
}

void Trainer::set_step_callback(std::function<void(int64_t, double)> callback) {
  step_callback_ = std::move(callback);
}

std::pair<double, double> Trainer::evaluate() {
  if (!val_inputs_.defined() || val_inputs_.size(0) == 0) return {kNotMeasured, kNotMeasured};
  auto module = model_.module;
  const bool was_training = module->is_training();
  module->eval();
  torch::NoGradGuard no_grad;
  double loss_sum = 0.0;
  double correct = 0.0;
  bool classification = true;
  const int64_t n = val_inputs_.size(0);
  for (int64_t begin = 0; begin < n; begin += options_.eval_batch_size()) {
    const int64_t len = std::min(options_.eval_batch_size(), n - begin);
    auto x = val_inputs_.narrow(0, begin, len);
    auto y = val_targets_.narrow(0, begin, len);
    auto out = model_.forward(x);
    loss_sum += loss_(out, y).item<double>() * static_cast<double>(len);
    classification = classification && out.dim() == 2 && y.dim() == 1 && !y.is_floating_point();
    if (classification) correct += out.argmax(1).eq(y).sum().item<double>();
  }
  module->train(was_training);
  return {loss_sum / static_cast<double>(n), classification ? correct / static_cast<double>(n) : kNotMeasured};
}

void Trainer::save_checkpoint(const std::string& path) const {
  torch::serialize::OutputArchive archive;
  archive.write("format", torch::tensor(kCheckpointFormat));
  archive.write("step", torch::tensor(step_));
  torch::serialize::OutputArchive model_archive;
  model_.module->save(model_archive);
  archive.write("model", model_archive);
  torch::serialize::OutputArchive optimizer_archive;
  optimizer_->save(optimizer_archive);
  archive.write("optimizer", optimizer_archive);
  torch::serialize::OutputArchive data_archive;
  data_->save(data_archive);
  archive.write("data", data_archive);
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    archive.write("rng_cpu", gen.get_state());
  }
  // A run killed while saving leaves its temporary file; the previous
  // checkpoint is intact, and the leftover is cleared here.
  io::remove_stale_temp_files(path);
  io::write_atomically(path, [&](std::ostream& out) { archive.save_to(out); });
}

void Trainer::load_checkpoint(const std::string& path) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    torch::Tensor format, step, rng;
    archive.read("format", format);
    TORCH_CHECK(format.item<int64_t>() == kCheckpointFormat, "unsupported checkpoint format ",
                format.item<int64_t>(), " (this bnlab writes ", kCheckpointFormat, ")");
    archive.read("step", step);
    torch::serialize::InputArchive model_archive, optimizer_archive, data_archive;
    archive.read("model", model_archive);
    archive.read("optimizer", optimizer_archive);
    archive.read("data", data_archive);
    archive.read("rng_cpu", rng);
    model_.module->load(model_archive);
    optimizer_->load(optimizer_archive);
    data_->load(data_archive);
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng);
    step_ = step.item<int64_t>();
  } catch (const c10::Error& e) {
    throw std::runtime_error("bnlab: cannot load checkpoint " + path + ": " + e.what_without_backtrace());
  }
}

TrainResult Trainer::fit() {
  TrainResult result;
  result.first_step = step_;
  const int64_t total = total_steps();
  const auto start = std::chrono::steady_clock::now();
  const bool lead = !data_parallel_ || data_parallel_->rank() == 0;  // evaluates, reports, checkpoints
  Progress progress(step_, total, lead ? options_.log_every() : 0);
  auto module = model_.module;
  module->train();
  auto save = [&] {
    if (options_.checkpoint_path().empty() || !lead) return;
    // Metrics first: a checkpoint at step k promises that the metrics files
    // hold every step before k, so a run killed right after saving resumes
    // without a gap in them.
    if (recorder_) recorder_->flush();
    save_checkpoint(options_.checkpoint_path());
  };
  // A step that fails (e.g. a data-parallel peer died) still leaves the
  // metrics of every completed step on disk; the last checkpoint stays valid.
  try {
    for (; step_ < total; ++step_) {
      const double lr = learning_rate(options_.lr(), step_);
      for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
      if (recorder_) recorder_->begin_step(step_);
      Batch batch = data_->next();
      const int64_t global_size = batch.inputs.size(0);
      double loss_scale = 1.0;
      if (data_parallel_) {
        // This rank's rows; its mean loss weighted by (its rows / all rows) ·
        // world size, so that averaging the ranks' gradients gives the gradient
        // of the whole batch's mean loss.
        const auto [begin, end] = data_parallel_->shard(global_size);
        batch.inputs = batch.inputs.narrow(0, begin, end - begin);
        batch.targets = batch.targets.narrow(0, begin, end - begin);
        loss_scale = static_cast<double>((end - begin) * data_parallel_->world_size()) / static_cast<double>(global_size);
      }
      const int64_t local_size = batch.inputs.size(0);
      auto output = model_.forward(batch.inputs);
      // A rank with no rows still runs backward (SyncBatchNorm's backward is a
      // collective) with an all-zero gradient.
      auto loss = local_size > 0 ? loss_(output, batch.targets) : output.sum() * 0.0;
      release_gradients(*optimizer_);
      (loss_scale == 1.0 ? loss : loss * loss_scale).backward();
      if (data_parallel_) data_parallel_->average_gradients();
      optimizer_->step();
      double loss_value = loss.item<double>();
      bool stop_requested = stop_ || interrupt_requested();
      if (data_parallel_) {
        const auto sums = data_parallel_->sum(
            {loss_value * static_cast<double>(local_size), stop_requested ? 1.0 : 0.0}, "Trainer loss and stop flag");
        loss_value = sums[0] / static_cast<double>(global_size);
        stop_requested = sums[1] > 0;
        loss = torch::tensor(loss_value, torch::kDouble);
      }
      result.train_loss.push_back(loss_value);
      result.last_step = step_;
      const bool last = step_ + 1 == total;
      if (lead && options_.eval_every() > 0 && ((step_ + 1) % options_.eval_every() == 0 || last)) {
        std::pair<double, double> val;
        if (recorder_) {
          auto paused = recorder_->pause_probes();  // eval forwards must not overwrite the step's rows
          val = evaluate();
        } else {
          val = evaluate();
        }
        result.val_loss.emplace_back(step_, val.first);
        result.val_accuracy.emplace_back(step_, val.second);
        if (recorder_) recorder_->set_eval(val.first, val.second);
      }
      if (recorder_) recorder_->end_step(loss, lr, global_size);
      progress.update(step_, loss_value);
      if (step_callback_) step_callback_(step_, loss_value);
      // A stop asked for by the callback counts at once in one process; data-
      // parallel ranks agree on stops at the next step's exchange.
      if (!data_parallel_) stop_requested = stop_ || interrupt_requested();
      const bool diverged = options_.stop_on_nonfinite() && !std::isfinite(loss_value);
      const bool stopping = stop_requested || diverged;
      if (stopping || (options_.checkpoint_every() > 0 && (step_ + 1) % options_.checkpoint_every() == 0)) {
        ++step_;  // the checkpoint resumes at the next step
        save();
        --step_;
      }
      if (stopping) {
        result.interrupted = !diverged;
        result.diverged = diverged;
        if (diverged && lead) spdlog::error("bnlab: loss is {} at step {}; stopping", loss_value, step_);
        ++step_;
        break;
      }
    }
  } catch (...) {
    progress.finish();
    if (recorder_) {
      try {
        recorder_->flush();
      } catch (const std::exception& e) {
        spdlog::error("bnlab: could not flush the metrics after a failed step: {}", e.what());
      }
    }
    throw;
  }
  progress.finish();
  if (recorder_) recorder_->flush();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace bnlab::train
