// A child process spoken to line by line over its stdin and stdout.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace bnlab::bench {

class ChildProcess {
 public:
  /// Starts argv[0] (a path) with `argv`; throws std::runtime_error naming it on failure.
  explicit ChildProcess(const std::vector<std::string>& argv);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  /// Sends `line` (a newline is added).
  void send(const std::string& line);
  /// The next line of the child's stdout (without the newline); throws if the
  /// child ends first or stays silent for `timeout_s`.
  std::string receive(double timeout_s);

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string buffer_;
  std::string program_;
};

}  // namespace bnlab::bench
