// bnlab::train::Recorder: per-layer saturation, gradient and update statistics
// on every training step, cheap enough to leave on.
#pragma once

#include <bnlab/optim/update_statistics.h>
#include <bnlab/train/alerts.h>
#include <bnlab/train/metrics.h>
#include <bnlab/train/sink.h>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bnlab::train {

struct RecorderOptions {
  /// Prefix of layer names: the module at path "3" is "net.3".
  TORCH_ARG(std::string, root_name) = "net";
  /// Histograms of each layer's input, output and gradients every N steps
  /// (steps with step % N == 0); 0 disables them.
  TORCH_ARG(int64_t, histogram_every) = 0;
  /// Number of bins of each histogram.
  TORCH_ARG(int64_t, histogram_bins) = 60;
  /// Values of each activation's input kept every step for its 15/50/85th
  /// percentiles: an input of up to this many values is kept whole (exact
  /// percentiles); a larger one as a strided sample of at most this many that
  /// reaches every unit and position. The training thread copies the sample
  /// every step, so a larger one costs step time (README, Performance: about
  /// 1 % of a small MLP's step at 4096); 0 records no percentiles (their
  /// columns stay empty).
  TORCH_ARG(int64_t, percentile_sample) = 1024;
  /// Alert thresholds.
  TORCH_ARG(AlertOptions, alerts) = {};
  /// Derive metrics, raise alerts and write sinks on a background thread,
  /// named "bnlab-writer" (the training thread only hands it one buffer per
  /// step). It needs a core: where BLAS or OpenMP threads occupy every core,
  /// the training threads wait while it runs (README, Performance).
  TORCH_ARG(bool, background_writer) = true;
};

/// A layer the recorder found.
struct LayerInfo {
  std::string name;
  std::string type;
  LayerKind kind;
};

/// Attaches to a module tree and records, for every layer on every step, the
/// metrics of metrics.h. Use it in your own loop:
///
///     bnlab::train::Recorder recorder(model);
///     recorder.add_sink(std::make_shared<bnlab::train::CsvSink>("metrics.csv"));
///     for (int64_t step = 0; step < steps; ++step) {
///       recorder.begin_step(step);
///       auto loss = criterion(model->forward(x), y);
///       optimizer.zero_grad();
///       loss.backward();
///       optimizer.step();
///       recorder.end_step(loss, learning_rate, x.size(0));
///     }
///     recorder.close();
///
/// Activations and BatchNorms write their statistics from inside their own
/// kernels (nn::LayerProbe); parameter statistics are one fused pass per
/// parameter. Everything for a step lands in one buffer on the model's device,
/// copied to the host once in end_step.
class Recorder {
 public:
  explicit Recorder(std::shared_ptr<torch::nn::Module> model, RecorderOptions options = {});
  template <typename ModuleType>
  explicit Recorder(const torch::nn::ModuleHolder<ModuleType>& model, RecorderOptions options = {})
      : Recorder(model.ptr(), std::move(options)) {}
  /// Detaches from the model after writing every recorded step.
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  void add_sink(std::shared_ptr<MetricsSink> sink);
  /// The layers found, in discovery order.
  const std::vector<LayerInfo>& layers() const;

  /// Call before the step's forward pass.
  void begin_step(int64_t step);
  /// Attach validation results to the current step (before end_step).
  void set_eval(double val_loss, double val_accuracy);
  /// Call after optimizer.step(), with the step's loss (a scalar tensor),
  /// learning rate and batch size.
  void end_step(const torch::Tensor& loss, double lr, int64_t batch_size);

  /// Lets a bnlab fused optimizer (bnlab::optim::SGD, Adam, AdamW) measure
  /// the parameter statistics in the pass of its update, from the next step
  /// on: the recorder then skips its own pass over those parameters and keeps
  /// no copy of them up to date. Δθ is then exactly the optimizer's update,
  /// and θ is read right after it: a change the loop makes to θ between
  /// optimizer.step() and end_step (clipping, say) is not seen. Parameters
  /// the optimizer does not report (not in it, no gradient, not on the CPU)
  /// are measured by the recorder as before; on the first step after a step
  /// the optimizer reported, their Δθ is "not measured". The Trainer calls
  /// this itself.
  void take_update_statistics_from(optim::ReportsUpdateStatistics& optimizer);

  /// Detaches the probes while alive (restores them on destruction): forward
  /// passes that are not part of the recorded step, such as evaluation.
  class ProbePause {
   public:
    explicit ProbePause(Recorder& recorder);
    ~ProbePause();
    ProbePause(const ProbePause&) = delete;
    ProbePause& operator=(const ProbePause&) = delete;

   private:
    Recorder& recorder_;
  };
  ProbePause pause_probes() { return ProbePause(*this); }

  /// Waits until every recorded step is written and flushed; rethrows a
  /// sink's error.
  void flush();
  /// flush() and stop recording (idempotent).
  void close();

  /// The alerts raised so far.
  std::vector<Alert> alerts() const;
  /// The metrics of the last step written (after flush()).
  StepMetrics last_step() const;

 private:
  void attach_probes(bool attached);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bnlab::train
