#include "bnlab/train/sink.h"

#include "train/file_sink_util.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace bnlab::train {

struct JsonlSink::Impl {
  std::unique_ptr<detail::AppendFile> file;
  bool include_timing = true;
};

JsonlSink::JsonlSink(std::string path, FileSinkOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->include_timing = options.include_timing;
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
  // Written with fmt rather than a JSON DOM: this runs every step.
  using detail::json_number;
  using detail::json_string;
  std::string out = fmt::format("{{\"step\":{}", step.step);
  for (const auto& c : step_metric_columns()) {
    const std::string name = c.name;
    if (!impl_->include_timing && (name == "step_time_s" || name == "examples_per_s")) continue;
    out += fmt::format(",\"{}\":{}", name, json_number(c.get(step)));
  }
  out += ",\"layers\":[";
  for (size_t i = 0; i < step.layers.size(); ++i) {
    const auto& layer = step.layers[i];
    out += fmt::format("{}{{\"layer\":{},\"type\":{},\"kind\":\"{}\",\"forward_order\":{}", i ? "," : "",
                       json_string(layer.name), json_string(layer.type), to_string(layer.kind), layer.forward_order);
    for (const auto& c : layer_metric_columns()) out += fmt::format(",\"{}\":{}", c.name, json_number(c.get(layer)));
    out += "}";
  }
  out += "]";
  if (!step.histograms.empty()) {
    out += ",\"histograms\":[";
    for (size_t i = 0; i < step.histograms.size(); ++i) {
      const auto& h = step.histograms[i];
      out += fmt::format("{}{{\"layer\":{},\"quantity\":{},\"edges\":[{}],\"counts\":[{}],\"min\":{},"
                         "\"max\":{},\"num\":{},\"sum\":{},\"sum_squares\":{}}}",
                         i ? "," : "", json_string(h.layer), json_string(h.quantity), fmt::join(h.edges, ","),
                         fmt::join(h.counts, ","), json_number(h.min), json_number(h.max), json_number(h.num),
                         json_number(h.sum), json_number(h.sum_squares));
    }
    out += "]";
  }
  out += "}\n";
  impl_->file->write(out);
}

void JsonlSink::flush() { impl_->file->flush(); }

}  // namespace bnlab::train
