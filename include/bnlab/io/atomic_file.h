// Writing files so that a crash or kill never leaves a half-written one.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>

namespace bnlab::io {

/// Writes `path` atomically: `write` fills a temporary file in the same
/// directory, which is flushed, fsync'ed and renamed over `path`. If anything
/// fails (or `write` throws), `path` is untouched and the temporary file is
/// removed; the error names the path and the cause.
void write_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

/// Removes the temporary files that write_atomically(path, ...) calls left
/// behind in processes that were killed mid-write (`<path>.tmp.<pid>.<n>`
/// whose process no longer exists). Files of live processes are kept, so a
/// concurrent writer is never disturbed. Returns how many were removed.
int remove_stale_temp_files(const std::string& path);

/// Same, with the whole content given.
void write_file_atomically(const std::string& path, const std::string& content);

/// The whole content of `path`; throws std::runtime_error naming the path when
/// it cannot be read.
std::string read_file(const std::string& path);

/// Creates `dir` and its parents if needed; throws naming the directory on failure.
void make_directories(const std::string& dir);

}  // namespace bnlab::io
