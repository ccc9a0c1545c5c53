// The CPU kernels run on torch's intra-op threads.
#include "kernels/cpu/reduce_kernel.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

namespace cpu = bnlab::kernels::cpu;

TEST(KernelThreads, KernelsUseTorchsIntraOpThreads) {
  // at::parallel_for runs in parallel only in code compiled with OpenMP (with
  // LibTorch's OpenMP backend); the kernels once ran on one thread whatever
  // torch::set_num_threads said. Every capability's build must follow it.
  const int previous_threads = torch::get_num_threads();
  for (const int threads : {1, 3}) {
    torch::set_num_threads(threads);
    for (int c = 0; c <= static_cast<int>(cpu::cpu_capability()); ++c) {
      const auto width = cpu::parallel_width_stub.variants[static_cast<size_t>(c)];
      ASSERT_NE(width, nullptr);
      EXPECT_EQ(width(64), threads) << cpu::capability_name(static_cast<cpu::Capability>(c));
    }
  }
  torch::set_num_threads(previous_threads);
}

}  // namespace
