#include "train/file_sink_util.h"

#include "bnlab/io/atomic_file.h"

#include <fmt/compile.h>
#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <string_view>

namespace bnlab::train::detail {

AppendFile::AppendFile(std::string path, bool append) : path_(std::move(path)) {
  const std::filesystem::path p(path_);
  if (p.has_parent_path()) io::make_directories(p.parent_path().string());
  file_ = std::fopen(path_.c_str(), append ? "ab" : "wb");
  if (file_ == nullptr) {
    throw std::runtime_error("cannot open " + path_ + " for writing: " + std::strerror(errno));
  }
  // A step's rows are a few KB: stdio's default buffer (4 KB) made a write
  // system call every step or two; with 64 KB one comes every few steps. The
  // recorder's flush() still pushes everything out.
  std::setvbuf(file_, nullptr, _IOFBF, kBufferBytes);
}

AppendFile::~AppendFile() {
  if (file_ != nullptr) std::fclose(file_);
}

void AppendFile::write(std::string_view bytes) {
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    throw std::runtime_error("cannot write " + path_ + ": " + std::strerror(errno));
  }
}

void AppendFile::flush() {
  if (std::fflush(file_) != 0) {
    throw std::runtime_error("cannot flush " + path_ + ": " + std::strerror(errno));
  }
}

bool keep_lines(const std::string& path, bool keep_first_line,
                const std::function<bool(const std::string& line)>& keep) {
  if (!std::filesystem::exists(path)) return false;
  std::istringstream in(io::read_file(path));
  std::string kept;
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    if ((first && keep_first_line) || (!line.empty() && keep(line))) kept += line + "\n";
    first = false;
  }
  io::write_file_atomically(path, kept);
  return true;
}

namespace {

// fmt's "{}" for a double (the shortest form that reads back exactly), with
// the format compiled in: the sinks append a few thousand numbers per step, and
// parsing "{}" at run time for each one took about half their time. The
// shortest form of a double has at most 24 characters
// ("-2.2250738585072014e-308").
void append_shortest(fmt::memory_buffer& out, double v) {
  char digits[32];
  const char* end = fmt::format_to(digits, FMT_COMPILE("{}"), v);
  out.append(digits, end);
}

}  // namespace

void append_text(fmt::memory_buffer& out, std::string_view text) { out.append(text.data(), text.data() + text.size()); }

bool is_timing_column(std::string_view name) { return name == "step_time_s" || name == "examples_per_s"; }

void append_number(fmt::memory_buffer& out, double v) {
  if (std::isnan(v)) return;
  if (std::isinf(v)) {
    append_text(out, v > 0 ? "inf" : "-inf");
    return;
  }
  append_shortest(out, v);
}

void append_json_number(fmt::memory_buffer& out, double v) {
  if (std::isfinite(v)) {
    append_shortest(out, v);
  } else {
    append_text(out, "null");
  }
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace bnlab::train::detail
