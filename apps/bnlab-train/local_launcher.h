// `bnlab-train --nproc N`: N local ranks on loopback, torchrun-style.
#pragma once

#include <string>
#include <vector>

namespace bnlab::apps {

/// Starts `nproc` copies of this executable with `args` (argv without the
/// launcher's own flags) and torchrun's environment (RANK, WORLD_SIZE,
/// LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT), around a TCPStore this
/// process hosts on a free port. Forwards Ctrl-C/SIGTERM to the ranks once.
/// When a rank fails (non-zero exit, or killed by a signal) it says which and
/// how, gives the others `grace_s` seconds to report their own errors, then
/// stops them. Returns the exit code: 0 when every rank succeeded, 130 when
/// interrupted, else the failing rank's code (1 when it was killed by a signal).
int launch_local_ranks(int nproc, const std::vector<std::string>& args, double timeout_s, double grace_s);

/// argv without `--nproc N` / `--nproc=N`.
std::vector<std::string> strip_launcher_flags(int argc, char** argv);

}  // namespace bnlab::apps
