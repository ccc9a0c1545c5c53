#include "bnlab/distributed/process_group.h"

// LibTorch's Gloo header is compiled only with USE_C10D_GLOO, which torch's
// CMake package does not export; Debian's (and PyTorch's) libtorch is built with it.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace bnlab::distributed {

namespace {

std::optional<std::string> getenv_string(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

int64_t parse_integer(const char* name, const std::string& text, int64_t lowest, int64_t highest) {
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || end == nullptr || *end != '\0' || errno != 0 || value < lowest || value > highest) {
    throw std::invalid_argument(fmt::format("bnlab::distributed: expected {} to be an integer in [{}, {}], got \"{}\"",
                                            name, lowest, highest, text));
  }
  return value;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

std::string rank_label(const ProcessGroupPtr& group) {
  return fmt::format("rank {} of {}", group->getRank(), group->getSize());
}

}  // namespace

void wait_for(const ProcessGroupPtr& group, const c10::intrusive_ptr<c10d::Work>& work,
              const char* collective, const char* what) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format(
        "bnlab::distributed: {} ({}) failed on {}: another rank died, left, or did not answer within the process "
        "group's timeout. Cause: {}",
        what, collective, rank_label(group), e.what()));
  }
}

std::optional<LaunchEnvironment> LaunchEnvironment::from_environment() {
  const auto world = getenv_string("WORLD_SIZE");
  if (!world) return std::nullopt;
  LaunchEnvironment env;
  env.world_size = parse_integer("WORLD_SIZE", *world, 1, 1 << 20);
  const auto rank = getenv_string("RANK");
  if (!rank) throw std::invalid_argument("bnlab::distributed: WORLD_SIZE is set but RANK is not (launch with torchrun, or set both)");
  env.rank = parse_integer("RANK", *rank, 0, env.world_size - 1);
  env.local_rank = parse_integer("LOCAL_RANK", getenv_string("LOCAL_RANK").value_or("0"), 0, env.world_size - 1);
  env.master_addr = getenv_string("MASTER_ADDR").value_or("127.0.0.1");
  if (env.master_addr.empty()) throw std::invalid_argument("bnlab::distributed: expected MASTER_ADDR to be a host name or address, got \"\"");
  env.master_port = parse_integer("MASTER_PORT", getenv_string("MASTER_PORT").value_or("29500"), 1, 65535);
  return env;
}

ProcessGroupPtr make_gloo_process_group(const c10::intrusive_ptr<c10d::Store>& store, int64_t rank,
                                        int64_t world_size, const GlooOptions& options) {
  TORCH_CHECK(world_size >= 1 && rank >= 0 && rank < world_size,
              "bnlab::distributed::make_gloo_process_group: expected 0 <= rank < world_size, got rank ", rank,
              " and world_size ", world_size);
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
  const auto ifname = !options.interface.empty() ? options.interface : getenv_string("GLOO_SOCKET_IFNAME").value_or("");
  if (!ifname.empty()) {
    gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else {
    const auto master = getenv_string("MASTER_ADDR").value_or("127.0.0.1");
    gloo_options->devices.push_back(is_loopback(master) ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                                        : c10d::ProcessGroupGloo::createDefaultDevice());
  }
  gloo_options->threads = 2;
  try {
#if TORCH_VERSION_MAJOR >= 2
    // LibTorch 2.x: ProcessGroupGloo is a backend behind a ProcessGroup.
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(rank),
                                                               static_cast<int>(world_size), gloo_options);
    auto group = c10::make_intrusive<c10d::ProcessGroup>(store, static_cast<int>(rank), static_cast<int>(world_size));
    group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, backend);
    return group;
#else
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(rank), static_cast<int>(world_size),
                                                       gloo_options);
#endif
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format(
        "bnlab::distributed: rank {} of {} could not connect to the other ranks within {} s: {}", rank, world_size,
        std::chrono::duration<double>(options.timeout).count(), e.what()));
  }
}

ProcessGroupPtr init_gloo_process_group(const LaunchEnvironment& env, const GlooOptions& options) {
  // Under torchrun the agent hosts the store (TORCHELASTIC_USE_AGENT_STORE)
  // and each restart uses its own key prefix; otherwise rank 0 hosts it.
  const bool agent_store = getenv_string("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(env.master_port);
  store_options.isServer = !agent_store && env.rank == 0;
  store_options.numWorkers = static_cast<std::size_t>(env.world_size);
  store_options.waitWorkers = false;  // the process group's rendezvous waits, under our timeout
  store_options.timeout = options.timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("bnlab::distributed: rank {} of {} could not {} the store at {}:{} within {} s: {}",
                                         env.rank, env.world_size, store_options.isServer ? "host" : "reach",
                                         env.master_addr, env.master_port,
                                         std::chrono::duration<double>(options.timeout).count(), e.what()));
  }
  if (agent_store) {
    const auto attempt = getenv_string("TORCHELASTIC_RESTART_COUNT").value_or("0");
    store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + attempt, store);
  }
  spdlog::debug("bnlab::distributed: rank {} of {} joining through {}:{}", env.rank, env.world_size, env.master_addr,
                env.master_port);
  return make_gloo_process_group(store, env.rank, env.world_size, options);
}

void all_reduce_sum(const ProcessGroupPtr& group, std::vector<torch::Tensor>& tensors, const char* what) {
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::SUM;
  wait_for(group, group->allreduce(tensors, options), "all_reduce", what);
}

torch::Tensor all_gather(const ProcessGroupPtr& group, const torch::Tensor& tensor, const char* what) {
  std::vector<torch::Tensor> input{tensor.contiguous()};
  std::vector<std::vector<torch::Tensor>> output(1);
  for (int r = 0; r < group->getSize(); ++r) output[0].push_back(torch::empty_like(input[0]));
  wait_for(group, group->allgather(output, input), "all_gather", what);
  return torch::stack(output[0]);
}

void broadcast(const ProcessGroupPtr& group, std::vector<torch::Tensor>& tensors, int64_t root, const char* what) {
  c10d::BroadcastOptions options;
  options.rootRank = root;
  for (auto& t : tensors) {
    std::vector<torch::Tensor> one{t};
    wait_for(group, group->broadcast(one, options), "broadcast", what);
  }
}

}  // namespace bnlab::distributed
