// Where recorded metrics go.
#pragma once

#include <bnlab/train/metrics.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace bnlab::train {

/// A destination for StepMetrics. The recorder calls write() once per step,
/// in step order, from a single thread (its background writer by default).
class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  virtual void write(const StepMetrics& step) = 0;
  /// Makes everything written so far durable (called by Recorder::flush()).
  virtual void flush() {}
};

/// Keeps every step in memory (for tests, studies and summaries).
class MemorySink : public MetricsSink {
 public:
  void write(const StepMetrics& step) override;
  /// A copy of the steps written so far.
  std::vector<StepMetrics> steps() const;

 private:
  mutable std::mutex mutex_;
  std::vector<StepMetrics> steps_;
};

/// Options shared by the file sinks.
struct FileSinkOptions {
  /// -1: start a new file (replacing any). k >= 0: resume a run from its step
  /// k: keep an existing file's records of steps <= k (rewritten atomically:
  /// temporary file + rename) and append after them.
  int64_t resume_after_step = -1;
  /// Write step_time_s and examples_per_s (CSV, JSON Lines). Off, the files
  /// depend only on the computation: the same seed gives identical files.
  bool include_timing = true;
};

/// One CSV row per step and layer: step, layer, type, kind, forward_order,
/// then step_metric_columns() (repeated on each row), then
/// layer_metric_columns(). NaN is written as an empty field. Loads with
/// pandas.read_csv.
class CsvSink : public MetricsSink {
 public:
  explicit CsvSink(std::string path, FileSinkOptions options = {});
  ~CsvSink() override;
  void write(const StepMetrics& step) override;
  void flush() override;
  /// The header line (without newline).
  static std::string header(bool include_timing = true);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// One JSON object per line and step: {"step", step metrics..., "layers": [{"layer",
/// "type", "kind", "forward_order", layer metrics...}], "histograms": [...]}.
/// NaN is written as null.
class JsonlSink : public MetricsSink {
 public:
  explicit JsonlSink(std::string path, FileSinkOptions options = {});
  ~JsonlSink() override;
  void write(const StepMetrics& step) override;
  void flush() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// TensorBoard event file in `logdir` (events.out.tfevents.<time>.<host>.<pid>):
/// TFRecord framing with masked CRC-32C; scalars tagged "<layer>/<metric>" and
/// "train/<metric>", histograms tagged "<layer>/<quantity>". When resuming, a
/// SessionLog START at the resume step makes TensorBoard drop the older
/// files' data after that step.
class TensorBoardSink : public MetricsSink {
 public:
  explicit TensorBoardSink(std::string logdir, FileSinkOptions options = {});
  ~TensorBoardSink() override;
  void write(const StepMetrics& step) override;
  void flush() override;
  /// The event file being written.
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bnlab::train
