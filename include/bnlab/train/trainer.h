// bnlab::train::Trainer: a training loop with evaluation, checkpoints that
// resume exactly, learning-rate schedules, progress and the recorder.
#pragma once

#include <bnlab/train/batch_source.h>
#include <bnlab/train/lr_schedule.h>
#include <bnlab/train/recorder.h>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace bnlab::distributed {
class DataParallel;
}  // namespace bnlab::distributed

namespace bnlab::train {

struct TrainerOptions {
  /// Number of optimizer steps; 0 means `epochs` passes over the data.
  TORCH_ARG(int64_t, steps) = 0;
  TORCH_ARG(int64_t, epochs) = 1;
  TORCH_ARG(LrScheduleOptions, lr) = {};
  /// Evaluate on the validation data every N steps (and after the last); 0: never.
  TORCH_ARG(int64_t, eval_every) = 0;
  /// Validation batch size.
  TORCH_ARG(int64_t, eval_batch_size) = 1024;
  /// Write a checkpoint every N steps (and when stopped early); 0: only when stopped.
  TORCH_ARG(int64_t, checkpoint_every) = 0;
  /// Checkpoint file (written atomically: temporary file + rename); "" disables checkpoints.
  TORCH_ARG(std::string, checkpoint_path) = "";
  /// Progress every N steps: a live line on a terminal, log lines otherwise; 0: silent.
  TORCH_ARG(int64_t, log_every) = 100;
  /// Stop when the training loss is non-finite (after recording the step).
  TORCH_ARG(bool, stop_on_nonfinite) = true;
};

/// What fit() did.
struct TrainResult {
  int64_t first_step = 0;                ///< 0, or the step resumed from
  int64_t last_step = -1;                ///< the last step run
  std::vector<double> train_loss;        ///< per step run, in order
  std::vector<std::pair<int64_t, double>> val_loss;
  std::vector<std::pair<int64_t, double>> val_accuracy;
  bool interrupted = false;              ///< stopped by request_stop() or Ctrl-C
  bool diverged = false;                 ///< stopped on a non-finite loss
  double seconds = 0.0;
};

/// A module and how to call it: any ModuleHolder with forward(Tensor) — a
/// torch::nn::Sequential included — converts to it.
struct Model {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&)> forward;

  Model(std::shared_ptr<torch::nn::Module> m, std::function<torch::Tensor(const torch::Tensor&)> f)
      : module(std::move(m)), forward(std::move(f)) {}
  template <typename ModuleType>
  /* implicit */ Model(torch::nn::ModuleHolder<ModuleType> holder)
      : module(holder.ptr()), forward([holder](const torch::Tensor& x) mutable { return holder->forward(x); }) {}
};

/// Loss of a model output against targets (e.g. cross entropy).
using LossFn = std::function<torch::Tensor(const torch::Tensor& output, const torch::Tensor& target)>;

/// Installs a SIGINT/SIGTERM handler that asks every running Trainer to stop
/// after its current step (flushing metrics and writing a checkpoint); a
/// second Ctrl-C exits at once.
void install_interrupt_handler();
/// Whether a stop was requested by the handler.
bool interrupt_requested();
/// Clears a handled request (tests).
void clear_interrupt();

/// Releases the gradient of every parameter `optimizer` holds (PyTorch 2's
/// zero_grad(set_to_none=True), which LibTorch 1.x lacks): backward then hands
/// each parameter its new gradient instead of adding it to a tensor of zeros,
/// which saves a fill and an add per parameter per step. The Trainer does this
/// before every backward.
void release_gradients(torch::optim::Optimizer& optimizer);

class Trainer {
 public:
  Trainer(Model model, std::shared_ptr<torch::optim::Optimizer> optimizer, LossFn loss,
          std::shared_ptr<BatchSource> train_data, TrainerOptions options);

  /// Validation data: loss always, accuracy when outputs are (N, classes) logits.
  void set_validation(torch::Tensor inputs, torch::Tensor targets);
  /// Record every step with this recorder (attached to the same model). With
  /// a bnlab fused optimizer, the optimizer measures the parameter statistics
  /// (Recorder::take_update_statistics_from).
  void set_recorder(std::shared_ptr<Recorder> recorder);
  /// Restores model, optimizer, step, RNG and data position from a checkpoint;
  /// fit() then continues where it was written.
  void load_checkpoint(const std::string& path);
  /// Writes the current state (atomically).
  void save_checkpoint(const std::string& path) const;

  /// Trains data-parallel over `data_parallel`'s ranks: every rank runs this
  /// Trainer on the same data source and takes its shard of each batch
  /// (DataParallel::shard), its loss weighted so that the averaged gradients
  /// are those of the whole batch's mean loss; gradients are averaged after
  /// each backward; the reported loss is the whole batch's; a stop (Ctrl-C on
  /// any rank, a non-finite loss) is agreed on by all ranks (a request_stop()
  /// from the step callback at the next step). Only rank 0
  /// evaluates, shows progress and writes checkpoints. Call broadcast_state()
  /// (or load the same checkpoint on every rank) before fit().
  void set_data_parallel(std::shared_ptr<distributed::DataParallel> data_parallel);

  /// Called after every step with the step and its loss (e.g. to stop early
  /// with request_stop()).
  void set_step_callback(std::function<void(int64_t step, double loss)> callback);

  /// Trains until the configured number of steps (or a stop request).
  TrainResult fit();
  /// Asks fit() to stop after the current step.
  void request_stop();

  /// The next step fit() will run.
  int64_t step() const { return step_; }
  int64_t total_steps() const;
  /// Mean validation loss and accuracy (NaN when not a classification output).
  std::pair<double, double> evaluate();

 private:
  Model model_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  LossFn loss_;
  std::shared_ptr<BatchSource> data_;
  TrainerOptions options_;
  std::shared_ptr<Recorder> recorder_;
  std::shared_ptr<distributed::DataParallel> data_parallel_;
  std::function<void(int64_t, double)> step_callback_;
  torch::Tensor val_inputs_;
  torch::Tensor val_targets_;
  int64_t step_ = 0;
  bool stop_ = false;
};

}  // namespace bnlab::train
