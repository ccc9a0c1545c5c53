#include "bnlab/io/atomic_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace {

TEST(AtomicFile, FailureMidWriteLeavesTheOldFileAndNoTemporary) {
  const auto dir = std::filesystem::temp_directory_path() / ("bnlab_atomic_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const auto path = (dir / "state.bin").string();
  bnlab::io::write_file_atomically(path, "old contents");
  EXPECT_THROW(bnlab::io::write_atomically(path,
                                           [](std::ostream& out) {
                                             out << "half of the new";
                                             throw std::runtime_error("killed");
                                           }),
               std::runtime_error);
  EXPECT_EQ(bnlab::io::read_file(path), "old contents");
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1) << "the temporary file is removed";
  bnlab::io::write_file_atomically(path, "new contents");
  EXPECT_EQ(bnlab::io::read_file(path), "new contents");
}

TEST(AtomicFile, ReadingAMissingFileNamesIt) {
  EXPECT_THAT([] { bnlab::io::read_file("/nonexistent/bnlab.txt"); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("/nonexistent/bnlab.txt")));
}

}  // namespace
