// Process groups for bnlab's distributed training: torch's own c10d engine
// (Gloo on CPU), set up from torchrun's environment, and the few collectives
// SyncBatchNorm and data-parallel training need, with errors that say which
// collective failed and why (a rank died, or did not answer in time).
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace bnlab::distributed {

/// The process group type SyncBatchNorm and DataParallel take: torch's own.
using ProcessGroupPtr = c10::intrusive_ptr<c10d::ProcessGroup>;

/// Where this process sits in a job, as torchrun describes it.
struct LaunchEnvironment {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;

  /// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; nullopt
  /// when WORLD_SIZE is unset (not launched distributed). A set but malformed
  /// or inconsistent variable (RANK ≥ WORLD_SIZE, a port outside 1..65535)
  /// throws std::invalid_argument naming it, what was expected and what came.
  static std::optional<LaunchEnvironment> from_environment();
};

/// Options of `init_gloo_process_group`.
struct GlooOptions {
  /// How long a rank waits for the others: to join (the store rendezvous) and
  /// in every collective. A rank that dies or never joins makes the others
  /// fail within about this time, never hang.
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  /// Network interface for Gloo's connections; empty: GLOO_SOCKET_IFNAME when
  /// set, else the loopback address when the master is local, else this
  /// host's name.
  std::string interface;
};

/// Joins (rank 0: hosts) the TCPStore at master_addr:master_port and builds a
/// Gloo process group of world_size ranks on it. Throws std::runtime_error
/// naming the rank, the address and the timeout when the others do not join in time.
ProcessGroupPtr init_gloo_process_group(const LaunchEnvironment& env, const GlooOptions& options = {});

/// A Gloo process group over an existing store (e.g. c10d::HashStore shared
/// by threads in tests, or a store the caller set up).
ProcessGroupPtr make_gloo_process_group(const c10::intrusive_ptr<c10d::Store>& store, int64_t rank,
                                        int64_t world_size, const GlooOptions& options = {});

/// Waits for a collective started on `group`; a failure (a rank died, left,
/// or the group's timeout passed) becomes a std::runtime_error naming `what`,
/// the collective and this rank.
void wait_for(const ProcessGroupPtr& group, const c10::intrusive_ptr<c10d::Work>& work, const char* collective,
              const char* what);

/// In place: every rank's `tensors` become the elementwise sum over ranks.
/// `what` names the caller in errors ("SyncBatchNorm backward").
void all_reduce_sum(const ProcessGroupPtr& group, std::vector<torch::Tensor>& tensors, const char* what);

/// Every rank's `tensor` (same shape on all ranks), stacked: (world_size, *shape).
torch::Tensor all_gather(const ProcessGroupPtr& group, const torch::Tensor& tensor, const char* what);

/// In place: every rank's `tensors` become rank `root`'s.
void broadcast(const ProcessGroupPtr& group, std::vector<torch::Tensor>& tensors, int64_t root, const char* what);

}  // namespace bnlab::distributed
