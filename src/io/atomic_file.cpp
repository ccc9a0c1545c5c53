#include "bnlab/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace bnlab::io {

namespace {

std::string temp_name_for(const std::string& path) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rng() % 1000000007ULL);
}

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;  // best effort: the rename below is what makes it atomic
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::filesystem::path target(path);
  if (target.has_parent_path()) make_directories(target.parent_path().string());
  const std::string tmp = temp_name_for(path);
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) {
        throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
      }
      write(out);
      out.flush();
      if (!out) throw std::runtime_error("cannot write " + tmp + " (disk full?)");
    }
    fsync_path(tmp, O_RDONLY);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
      throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
    }
    if (target.has_parent_path()) fsync_path(target.parent_path().string(), O_RDONLY | O_DIRECTORY);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
}

void write_file_atomically(const std::string& path, const std::string& content) {
  write_atomically(path, [&](std::ostream& out) { out.write(content.data(), static_cast<std::streamsize>(content.size())); });
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read " + path);
  return s.str();
}

void make_directories(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec && !std::filesystem::is_directory(dir)) {
    throw std::runtime_error("cannot create directory " + dir + ": " + ec.message());
  }
}

}  // namespace bnlab::io
