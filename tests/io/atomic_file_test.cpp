#include "bnlab/io/atomic_file.h"

#include <gmock/gmock.h>
#include "scratch_dir.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace {

TEST(AtomicFile, FailureMidWriteLeavesTheOldFileAndNoTemporary) {
  const auto dir = bnlab_test::scratch_dir("atomic");
  std::filesystem::remove_all(dir);  // write_file_atomically creates it
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

TEST(AtomicFile, StaleTemporariesOfDeadWritersAreRemovedLiveOnesKept) {
  const auto dir = bnlab_test::scratch_dir("atomic_stale");
  const auto path = (dir / "checkpoint.pt").string();
  // A child that exits at once: its pid is certainly dead once reaped.
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ::waitpid(dead, nullptr, 0);
  const auto touch = [](const std::string& p) { std::ofstream(p) << "partial"; };
  touch(path + ".tmp." + std::to_string(dead) + ".17");           // killed writer
  touch(path + ".tmp." + std::to_string(::getppid()) + ".3");     // a live process
  touch(path + ".tmp." + std::to_string(::getpid()) + ".5");      // this process
  touch((dir / "other.pt.tmp.").string() + std::to_string(dead) + ".1");  // another file's
  touch(path);
  EXPECT_EQ(bnlab::io::remove_stale_temp_files(path), 1);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(dead) + ".17"));
  EXPECT_TRUE(std::filesystem::exists(path + ".tmp." + std::to_string(::getppid()) + ".3"));
  EXPECT_TRUE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid()) + ".5"));
  EXPECT_TRUE(std::filesystem::exists((dir / "other.pt.tmp.").string() + std::to_string(dead) + ".1"));
  EXPECT_TRUE(std::filesystem::exists(path));
  std::filesystem::remove_all(dir);
}

TEST(AtomicFile, ReadingAMissingFileNamesIt) {
  EXPECT_THAT([] { bnlab::io::read_file("/nonexistent/bnlab.txt"); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("/nonexistent/bnlab.txt")));
}

}  // namespace
