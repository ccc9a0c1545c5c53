#include "bnlab/data/synthetic_classification.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

TEST(SyntheticClassification, IsDeterministicAndIndependentOfTheGlobalSeed) {
  torch::manual_seed(1);
  bnlab::data::SyntheticClassification a;
  torch::manual_seed(2);
  bnlab::data::SyntheticClassification b;
  EXPECT_TRUE(torch::equal(a.train().inputs, b.train().inputs));
  EXPECT_TRUE(torch::equal(a.val().targets, b.val().targets));
  bnlab::data::SyntheticClassification c(bnlab::data::SyntheticClassificationOptions().seed(99));
  EXPECT_FALSE(torch::equal(a.train().inputs, c.train().inputs));
}

TEST(SyntheticClassification, ShapesAndEveryClassPresent) {
  bnlab::data::SyntheticClassification d(
      bnlab::data::SyntheticClassificationOptions().train_size(4000).val_size(500));
  EXPECT_EQ(d.train().inputs.sizes(), (std::vector<int64_t>{4000, 32}));
  EXPECT_EQ(d.val().targets.sizes(), (std::vector<int64_t>{500}));
  auto counts = torch::bincount(d.train().targets, {}, 10);
  EXPECT_EQ(counts.numel(), 10);
  EXPECT_TRUE(counts.gt(0).all().item<bool>()) << counts;
}

}  // namespace
