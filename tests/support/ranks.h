// Runs k "ranks" as threads of the test process, each with its own Gloo
// process group over one in-memory store (loopback sockets only, no ports to
// choose), and collects what each rank threw.
#pragma once

#include "bnlab/distributed/process_group.h"

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace bnlab_test {

/// The error each rank's body threw ("" when it returned normally).
using RankErrors = std::vector<std::string>;

/// Calls body(rank, group) on `world_size` threads, each with a Gloo group of
/// that size whose collectives time out after `timeout`. Ranks listed in
/// `absent` never join (to test what the others do then). With
/// `barrier_at_end`, a rank whose body returned waits for the others before
/// its group closes: Gloo reports a peer that closes while others are still
/// connecting as "connection closed".
inline RankErrors run_ranks(int world_size,
                            const std::function<void(int rank, const bnlab::distributed::ProcessGroupPtr& group)>& body,
                            std::chrono::milliseconds timeout = std::chrono::seconds(30),
                            const std::vector<int>& absent = {}, bool barrier_at_end = true) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  store->setTimeout(timeout);
  RankErrors errors(static_cast<size_t>(world_size));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world_size; ++rank) {
    if (std::find(absent.begin(), absent.end(), rank) != absent.end()) continue;
    threads.emplace_back([&, rank] {
      try {
        bnlab::distributed::GlooOptions options;
        options.timeout = timeout;
        auto group = bnlab::distributed::make_gloo_process_group(store, rank, world_size, options);
        body(rank, group);
        if (barrier_at_end) bnlab::distributed::wait_for(group, group->barrier(), "barrier", "run_ranks end");
      } catch (const c10::Error& e) {
        errors[static_cast<size_t>(rank)] = e.what_without_backtrace();
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(rank)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace bnlab_test
