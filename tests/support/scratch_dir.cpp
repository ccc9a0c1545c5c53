#include "scratch_dir.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <system_error>

namespace bnlab_test {

namespace {

std::filesystem::path process_root() {
  return std::filesystem::temp_directory_path() / ("bnlab_tests_" + std::to_string(::getpid()));
}

// Removes this process's scratch root after the last test (forked children
// exit without running it).
class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(process_root(), ignored);
  }
};

}  // namespace

std::filesystem::path scratch_dir(const std::string& name) {
  static const bool registered = [] {
    ::testing::AddGlobalTestEnvironment(new ScratchCleanup);  // gtest owns it
    return true;
  }();
  (void)registered;
  const auto dir = process_root() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace bnlab_test
