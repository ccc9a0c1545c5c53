#include "bnlab/train/sink.h"

#include "train/file_sink_util.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace bnlab::train {

namespace {

nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

}  // namespace

struct JsonlSink::Impl {
  std::unique_ptr<detail::AppendFile> file;
};

JsonlSink::JsonlSink(std::string path, FileSinkOptions options) : impl_(std::make_unique<Impl>()) {
  bool append = false;
  if (options.resume_after_step >= 0) {
    append = detail::keep_lines(path, /*keep_first_line=*/false, [&](const std::string& line) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      return j.is_object() && j.contains("step") && j["step"].get<int64_t>() <= options.resume_after_step;
    });
  }
  impl_->file = std::make_unique<detail::AppendFile>(path, append);
}

JsonlSink::~JsonlSink() {
  try {
    flush();
  } catch (...) {  // see CsvSink::~CsvSink
  }
}

void JsonlSink::write(const StepMetrics& step) {
  nlohmann::json j;
  j["step"] = step.step;
  for (const auto& c : step_metric_columns()) j[c.name] = number(c.get(step));
  auto& layers = j["layers"] = nlohmann::json::array();
  for (const auto& layer : step.layers) {
    nlohmann::json l{{"layer", layer.name},
                     {"type", layer.type},
                     {"kind", to_string(layer.kind)},
                     {"forward_order", layer.forward_order}};
    for (const auto& c : layer_metric_columns()) l[c.name] = number(c.get(layer));
    layers.push_back(std::move(l));
  }
  if (!step.histograms.empty()) {
    auto& hs = j["histograms"] = nlohmann::json::array();
    for (const auto& h : step.histograms) {
      hs.push_back({{"layer", h.layer},
                    {"quantity", h.quantity},
                    {"edges", h.edges},
                    {"counts", h.counts},
                    {"min", number(h.min)},
                    {"max", number(h.max)},
                    {"num", h.num},
                    {"sum", number(h.sum)},
                    {"sum_squares", number(h.sum_squares)}});
    }
  }
  impl_->file->write(j.dump() + "\n");
}

void JsonlSink::flush() { impl_->file->flush(); }

}  // namespace bnlab::train
