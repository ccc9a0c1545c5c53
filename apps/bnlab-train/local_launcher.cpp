#include "bnlab-train/local_launcher.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace bnlab::apps {

namespace {

std::atomic<int> g_forward_signal{0};

extern "C" void remember_signal(int signal_number) { g_forward_signal.store(signal_number); }

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return fmt::format("was killed by signal {} ({})", sig, strsignal(sig));
  }
  return fmt::format("exited with code {}", WEXITSTATUS(status));
}

bool failed(int status) { return WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 130); }

}  // namespace

std::vector<std::string> strip_launcher_flags(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0) continue;
    args.push_back(a);
  }
  return args;
}

int launch_local_ranks(int nproc, const std::vector<std::string>& args, double timeout_s, double grace_s) {
  // The rendezvous store, on a port the kernel picks (no race for a free port);
  // the ranks reach it as torchrun's workers reach the agent's store.
  c10d::TCPStoreOptions store_options;
  store_options.port = 0;
  store_options.isServer = true;
  store_options.waitWorkers = false;
  store_options.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000.0));
  c10d::TCPStore store("127.0.0.1", store_options);
  const int port = store.getPort();
  spdlog::info("bnlab-train: starting {} ranks (store on 127.0.0.1:{})", nproc, port);

  std::vector<pid_t> pids(static_cast<size_t>(nproc), -1);
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      spdlog::error("bnlab-train: cannot start rank {}: {}", rank, std::strerror(errno));
      for (pid_t p : pids) {
        if (p > 0) ::kill(p, SIGKILL);
      }
      return 1;
    }
    if (pid == 0) {
      // Own process group: a terminal's Ctrl-C reaches the launcher only,
      // which forwards it once (twice would make the ranks quit without a
      // checkpoint). Dies with the launcher.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
      ::setenv("TORCHELASTIC_RESTART_COUNT", "0", 1);
      std::vector<char*> argv;
      std::string self = "bnlab-train";
      argv.push_back(self.data());
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "bnlab-train: cannot start rank %d: %s\n", rank, std::strerror(errno));
      std::_Exit(127);
    }
    pids[static_cast<size_t>(rank)] = pid;
  }

  struct sigaction action {};
  action.sa_handler = remember_signal;
  ::sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);

  int exit_code = 0;
  int alive = nproc;
  bool forwarded = false;
  bool interrupted = false;
  std::chrono::steady_clock::time_point stop_at{};
  bool stopping = false;
  while (alive > 0) {
    if (const int sig = g_forward_signal.exchange(0); sig != 0) {
      interrupted = true;
      if (!forwarded) {
        for (pid_t p : pids) {
          if (p > 0) ::kill(p, sig);
        }
        forwarded = true;
      } else {
        for (pid_t p : pids) {
          if (p > 0) ::kill(p, SIGKILL);
        }
      }
    }
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      for (int rank = 0; rank < nproc; ++rank) {
        if (pids[static_cast<size_t>(rank)] != done) continue;
        pids[static_cast<size_t>(rank)] = -1;
        --alive;
        if (failed(status)) {
          if (exit_code == 0 || exit_code == 130) {
            spdlog::error("bnlab-train: rank {} {}; stopping the other ranks", rank, describe_exit(status));
            exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
          }
          if (!stopping) {
            stopping = true;
            stop_at = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000.0));
          }
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 130 && exit_code == 0) {
          exit_code = 130;
        }
      }
      continue;
    }
    if (stopping && std::chrono::steady_clock::now() >= stop_at) {
      for (pid_t p : pids) {
        if (p > 0) ::kill(p, SIGKILL);
      }
      stopping = false;  // reaped on the next turns
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (exit_code == 0 && interrupted) exit_code = 130;
  return exit_code;
}

}  // namespace bnlab::apps
