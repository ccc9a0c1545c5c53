#include "bnlab/train/sink.h"

#include "train/file_sink_util.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <string_view>

namespace bnlab::train {

namespace {

// ,"name": — the metric names are plain identifiers (no escaping needed).
void append_key(fmt::memory_buffer& out, std::string_view name) {
  detail::append_text(out, ",\"");
  detail::append_text(out, name);
  detail::append_text(out, "\":");
}

}  // namespace

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
  // Written with fmt into one buffer rather than a JSON DOM: this runs every step.
  using detail::append_json_number;
  using detail::json_string;
  fmt::memory_buffer out;
  auto it = std::back_inserter(out);
  fmt::format_to(it, "{{\"step\":{}", step.step);
  for (const auto& c : step_metric_columns()) {
    if (!impl_->include_timing && detail::is_timing_column(c.name)) continue;
    append_key(out, c.name);
    append_json_number(out, c.get(step));
  }
  fmt::format_to(it, ",\"layers\":[");
  for (size_t i = 0; i < step.layers.size(); ++i) {
    const auto& layer = step.layers[i];
    fmt::format_to(it, "{}{{\"layer\":{},\"type\":{},\"kind\":\"{}\",\"forward_order\":{}", i ? "," : "",
                   json_string(layer.name), json_string(layer.type), to_string(layer.kind), layer.forward_order);
    for (const auto& c : layer_metric_columns()) {
      append_key(out, c.name);
      append_json_number(out, c.get(layer));
    }
    out.push_back('}');
  }
  out.push_back(']');
  if (!step.histograms.empty()) {
    fmt::format_to(it, ",\"histograms\":[");
    for (size_t i = 0; i < step.histograms.size(); ++i) {
      const auto& h = step.histograms[i];
      fmt::format_to(it, "{}{{\"layer\":{},\"quantity\":{},\"edges\":[{}],\"counts\":[{}]", i ? "," : "",
                     json_string(h.layer), json_string(h.quantity), fmt::join(h.edges, ","), fmt::join(h.counts, ","));
      const std::pair<const char*, double> summary[] = {
          {"min", h.min}, {"max", h.max}, {"num", h.num}, {"sum", h.sum}, {"sum_squares", h.sum_squares}};
      for (const auto& [key, value] : summary) {
        append_key(out, key);
        append_json_number(out, value);
      }
      out.push_back('}');
    }
    out.push_back(']');
  }
  fmt::format_to(it, "}}\n");
  impl_->file->write(std::string_view(out.data(), out.size()));
}

void JsonlSink::flush() { impl_->file->flush(); }

}  // namespace bnlab::train
