#include "bnlab/train/sink.h"

#include "bnlab/io/atomic_file.h"
#include "train/file_sink_util.h"
#include "train/tensorboard/event.pb.h"
#include "train/tensorboard/tfrecord.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <unordered_map>
#include <vector>

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
  // Reused every step: a cleared protobuf message keeps its repeated elements
  // and their strings' capacity, so a step's summary allocates nothing new.
  tbproto::Event event;
  // The summary sits in Event's oneof, which Clear() deletes: it is kept apart
  // and lent to the event for serializing.
  std::unique_ptr<tbproto::Summary> summary = std::make_unique<tbproto::Summary>();
  std::string bytes;
  // "train/<metric>", and "<layer>/<metric>" per layer name, made once.
  std::vector<std::string> step_tags;
  std::unordered_map<std::string, std::vector<std::string>> layer_tags;

  void write_event(const tbproto::Event& e) {
    bytes.clear();
    e.SerializeToString(&bytes);
    file->write(tensorboard::frame_record(bytes));
  }

  const std::vector<std::string>& tags_of(const std::string& layer) {
    auto it = layer_tags.find(layer);
    if (it == layer_tags.end()) {
      std::vector<std::string> tags;
      for (const auto& c : layer_metric_columns()) tags.push_back(layer + "/" + c.name);
      it = layer_tags.emplace(layer, std::move(tags)).first;
    }
    return it->second;
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
  tbproto::Event& event = impl_->event;
  event.Clear();
  event.set_wall_time(wall_time());
  event.set_step(step.step);
  tbproto::Summary* summary = impl_->summary.get();
  summary->Clear();
  if (impl_->step_tags.empty()) {
    for (const auto& c : step_metric_columns()) impl_->step_tags.push_back(std::string("train/") + c.name);
  }
  size_t k = 0;
  for (const auto& c : step_metric_columns()) Impl::add_scalar(summary, impl_->step_tags[k++], c.get(step));
  for (const auto& layer : step.layers) {
    const auto& tags = impl_->tags_of(layer.name);
    k = 0;
    for (const auto& c : layer_metric_columns()) Impl::add_scalar(summary, tags[k++], c.get(layer));
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
  event.set_allocated_summary(impl_->summary.release());
  try {
    impl_->write_event(event);
  } catch (...) {
    impl_->summary.reset(event.release_summary());
    throw;
  }
  impl_->summary.reset(event.release_summary());
}

void TensorBoardSink::flush() { impl_->file->flush(); }

}  // namespace bnlab::train
