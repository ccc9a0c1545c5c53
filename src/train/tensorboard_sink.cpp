#include "bnlab/train/sink.h"

#include "bnlab/io/atomic_file.h"
#include "train/file_sink_util.h"
#include "train/tensorboard/event.pb.h"
#include "train/tensorboard/tfrecord.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>

namespace bnlab::train {

namespace {

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string hostname() {
  char name[256] = {0};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

}  // namespace

struct TensorBoardSink::Impl {
  std::unique_ptr<detail::AppendFile> file;

  void write_event(const tbproto::Event& event) {
    std::string bytes;
    event.SerializeToString(&bytes);
    file->write(tensorboard::frame_record(bytes));
  }

  static void add_scalar(tbproto::Summary* summary, const std::string& tag, double value) {
    if (!std::isfinite(value)) return;
    auto* v = summary->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
};

TensorBoardSink::TensorBoardSink(std::string logdir, FileSinkOptions options)
    : impl_(std::make_unique<Impl>()) {
  io::make_directories(logdir);
  const double now = wall_time();
  const std::string path = fmt::format("{}/events.out.tfevents.{}.{}.{}", logdir,
                                       static_cast<int64_t>(now), hostname(), ::getpid());
  impl_->file = std::make_unique<detail::AppendFile>(path, /*append=*/false);
  tbproto::Event version;
  version.set_wall_time(now);
  version.set_file_version("brain.Event:2");
  impl_->write_event(version);
  if (options.resume_after_step >= 0) {
    // TensorBoard drops data of earlier files with steps after a START event's.
    tbproto::Event start;
    start.set_wall_time(now);
    start.set_step(options.resume_after_step + 1);
    start.mutable_session_log()->set_status(tbproto::SessionLog::START);
    impl_->write_event(start);
  }
}

TensorBoardSink::~TensorBoardSink() {
  try {
    flush();
  } catch (...) {  // see CsvSink::~CsvSink
  }
}

const std::string& TensorBoardSink::path() const { return impl_->file->path(); }

void TensorBoardSink::write(const StepMetrics& step) {
  tbproto::Event event;
  event.set_wall_time(wall_time());
  event.set_step(step.step);
  auto* summary = event.mutable_summary();
  for (const auto& c : step_metric_columns()) Impl::add_scalar(summary, std::string("train/") + c.name, c.get(step));
  for (const auto& layer : step.layers) {
    for (const auto& c : layer_metric_columns()) {
      Impl::add_scalar(summary, layer.name + "/" + c.name, c.get(layer));
    }
  }
  for (const auto& h : step.histograms) {
    if (h.counts.empty()) continue;
    auto* v = summary->add_value();
    v->set_tag(h.layer + "/" + h.quantity);
    auto* histo = v->mutable_histo();
    histo->set_min(h.min);
    histo->set_max(h.max);
    histo->set_num(h.num);
    histo->set_sum(h.sum);
    histo->set_sum_squares(h.sum_squares);
    // TensorBoard's buckets are (limit[i-1], limit[i]]: the right edges.
    for (size_t i = 0; i < h.counts.size(); ++i) {
      histo->add_bucket_limit(h.edges[i + 1]);
      histo->add_bucket(h.counts[i]);
    }
  }
  impl_->write_event(event);
}

void TensorBoardSink::flush() { impl_->file->flush(); }

}  // namespace bnlab::train
