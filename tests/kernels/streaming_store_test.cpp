// The eval transform's non-temporal path (kernels/cpu/streaming_store.h) gives
// the values of the ordinary one. The threshold is lowered so that small
// tensors take it; plane lengths that are not a multiple of the vector width
// put every plane but the first at a misaligned address (head, body and tail).
// The threshold comes from the cache sizes the system reports; on AMD a
// package-sized level 3 (as VMs report it) is taken as the 32 MiB default.
#include "kernels/cpu/streaming_store.h"

#include "bnlab/nn/functional/batch_norm.h"
#include "assert_close.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

namespace {

struct ThresholdOverride {
  explicit ThresholdOverride(int64_t bytes) { bnlab::kernels::cpu::set_streaming_store_threshold(bytes); }
  ~ThresholdOverride() { bnlab::kernels::cpu::set_streaming_store_threshold(-1); }
};

torch::Tensor eval_batch_norm(const torch::Tensor& x, int64_t threshold) {
  ThresholdOverride o(threshold);
  const int64_t c = x.size(1);
  auto opts = x.options();
  torch::manual_seed(5);
  auto mean = torch::randn({c}, opts), var = torch::rand({c}, opts) + 0.5;
  auto weight = torch::randn({c}, opts), bias = torch::randn({c}, opts);
  return bnlab::functional::batch_norm(x, mean, var, weight, bias, /*training=*/false, 0.1, 1e-5);
}

torch::Tensor native_eval(const torch::Tensor& x) {
  const int64_t c = x.size(1);
  auto opts = x.options();
  torch::manual_seed(5);
  auto mean = torch::randn({c}, opts), var = torch::rand({c}, opts) + 0.5;
  auto weight = torch::randn({c}, opts), bias = torch::randn({c}, opts);
  return torch::batch_norm(x, weight, bias, mean, var, false, 0.1, 1e-5, false);
}

}  // namespace

TEST(StreamingStore, DefaultThresholdIsACacheSize) {
  EXPECT_GE(bnlab::kernels::cpu::streaming_store_threshold(), int64_t{1} << 16);
  {
    ThresholdOverride o(123);
    EXPECT_EQ(bnlab::kernels::cpu::streaming_store_threshold(), 123);
  }
  EXPECT_GE(bnlab::kernels::cpu::streaming_store_threshold(), int64_t{1} << 16);
}

TEST(StreamingStore, EvalTransformStreamedEqualsStoredAndNative) {
  torch::manual_seed(31);
  const std::vector<torch::Tensor> inputs = {
      torch::randn({3, 5, 7, 5}),                    // planes of 35 floats: every alignment
      torch::randn({2, 4, 64}),                      // aligned planes, no head or tail
      torch::randn({2, 3, 3}),                       // planes shorter than a vector
      torch::randn({3, 5, 37}, torch::kDouble),      // double
      torch::randn({4, 6, 9, 11}).narrow(3, 1, 9),   // non-contiguous input
  };
  for (const auto& x : inputs) {
    SCOPED_TRACE(::testing::PrintToString(x.sizes()));
    const auto streamed = eval_batch_norm(x, 0);
    const auto stored = eval_batch_norm(x, std::numeric_limits<int64_t>::max());
    EXPECT_TRUE(torch::equal(streamed, stored));
    EXPECT_TRUE(bnlab_test::assert_close(streamed, native_eval(x)));
  }
}

namespace {

using bnlab::kernels::cpu::level3_bytes_for_threshold;
constexpr int64_t kMiB = int64_t{1} << 20;

TEST(StreamingStoreThreshold, SysfsFirstThenSysconfLevel3ThenLevel2ThenDefault) {
  EXPECT_EQ(level3_bytes_for_threshold(16 * kMiB, 256 * kMiB, 1 * kMiB, true), 16 * kMiB);
  EXPECT_EQ(level3_bytes_for_threshold(0, 64 * kMiB, 1 * kMiB, false), 64 * kMiB);
  EXPECT_EQ(level3_bytes_for_threshold(0, 0, 2 * kMiB, false), 2 * kMiB);
  EXPECT_EQ(level3_bytes_for_threshold(0, -1, -1, false), 32 * kMiB);
}

TEST(StreamingStoreThreshold, AmdPackageSizedLevel3TakenAsDefault) {
  // The Zen 5 VM: no sysfs entry, 508 MB from sysconf.
  EXPECT_EQ(level3_bytes_for_threshold(0, 532676608, 1 * kMiB, true), 32 * kMiB);
  // A V-Cache core complex's 96 MB is believed; so is a large Intel L3, shared by the whole die.
  EXPECT_EQ(level3_bytes_for_threshold(0, 96 * kMiB, 1 * kMiB, true), 96 * kMiB);
  EXPECT_EQ(level3_bytes_for_threshold(0, 480 * kMiB, 2 * kMiB, false), 480 * kMiB);
}

}  // namespace
