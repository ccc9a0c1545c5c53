#include "bnlab/train/sink.h"

#include "train/file_sink_util.h"

#include <fmt/format.h>

#include <stdexcept>

namespace bnlab::train {

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

int64_t leading_step(const std::string& line) {
  try {
    return std::stoll(line.substr(0, line.find(',')));
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

struct CsvSink::Impl {
  std::unique_ptr<detail::AppendFile> file;
  bool include_timing = true;
};

std::string CsvSink::header(bool include_timing) {
  std::string h = "step,layer,type,kind,forward_order";
  for (const auto& c : step_metric_columns()) {
    if (include_timing || !detail::is_timing_column(c.name)) h += std::string(",") + c.name;
  }
  for (const auto& c : layer_metric_columns()) h += std::string(",") + c.name;
  return h;
}

CsvSink::CsvSink(std::string path, FileSinkOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->include_timing = options.include_timing;
  const std::string expected_header = header(options.include_timing);
  bool append = false;
  if (options.resume_after_step >= 0) {
    bool header_matches = true;
    append = detail::keep_lines(path, /*keep_first_line=*/true, [&](const std::string& line) {
      if (line.rfind("step,", 0) == 0) {
        header_matches = line == expected_header;
        return false;
      }
      const int64_t step = leading_step(line);
      return step >= 0 && step <= options.resume_after_step;
    });
    if (append && !header_matches) {
      throw std::runtime_error("cannot resume " + path +
                               ": its columns differ from this version's CSV header");
    }
  }
  impl_->file = std::make_unique<detail::AppendFile>(path, append);
  if (!append) impl_->file->write(expected_header + "\n");
}

CsvSink::~CsvSink() {
  try {
    flush();
  } catch (...) {  // destructors must not throw; flush() reports errors to callers that ask
  }
}

void CsvSink::write(const StepMetrics& step) {
  fmt::memory_buffer step_part;
  for (const auto& c : step_metric_columns()) {
    if (!impl_->include_timing && detail::is_timing_column(c.name)) continue;
    step_part.push_back(',');
    detail::append_number(step_part, c.get(step));
  }
  fmt::memory_buffer out;
  auto it = std::back_inserter(out);
  for (const auto& layer : step.layers) {
    fmt::format_to(it, "{},{},{},{},{}", step.step, csv_field(layer.name), csv_field(layer.type),
                   to_string(layer.kind), layer.forward_order);
    out.append(step_part.data(), step_part.data() + step_part.size());
    for (const auto& c : layer_metric_columns()) {
      out.push_back(',');
      detail::append_number(out, c.get(layer));
    }
    out.push_back('\n');
  }
  impl_->file->write(std::string_view(out.data(), out.size()));
}

void CsvSink::flush() { impl_->file->flush(); }

}  // namespace bnlab::train
