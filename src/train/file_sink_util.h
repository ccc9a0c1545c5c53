// Shared plumbing of the file sinks (internal).
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace bnlab::train::detail {

/// An append-only file for a sink: buffered writes, errors name the path.
class AppendFile {
 public:
  /// Opens `path` for writing: truncated when `append` is false.
  AppendFile(std::string path, bool append);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  void write(std::string_view bytes);
  void flush();
  const std::string& path() const { return path_; }

 private:
  static constexpr size_t kBufferBytes = 64 * 1024;
  std::string path_;
  std::FILE* file_ = nullptr;
};

/// For resuming: keeps the lines of an existing text file for which `keep`
/// returns true (the first line always, when `keep_first_line`), rewriting the
/// file atomically. Returns false when the file does not exist.
bool keep_lines(const std::string& path, bool keep_first_line,
                const std::function<bool(const std::string& line)>& keep);

/// Appends text as is.
void append_text(fmt::memory_buffer& out, std::string_view text);

/// The step columns that hold timings (left out when FileSinkOptions::include_timing is false).
bool is_timing_column(std::string_view name);

/// Appends "1.5", "3e-05", "" for NaN, "inf"/"-inf" (CSV): the shortest form that reads back exactly.
/// The sinks format into one buffer per step, with no allocation per number.
void append_number(fmt::memory_buffer& out, double v);

/// Appends a JSON number, or null for NaN/Inf.
void append_json_number(fmt::memory_buffer& out, double v);

/// A JSON string literal.
std::string json_string(const std::string& s);

}  // namespace bnlab::train::detail
