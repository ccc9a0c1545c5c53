#include "bnlab/models/mlp.h"

#include "bnlab/nn/modules/activation.h"
#include "bnlab/nn/modules/batch_norm.h"
#include "bnlab/nn/modules/batch_norm_act.h"

#include "assert_close.h"
#include "errors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace {

namespace bm = bnlab::models;

std::vector<std::string> layer_types(const torch::nn::Sequential& net) {
  std::vector<std::string> names;
  for (const auto& m : net->children()) {
    std::string n = m->name();
    n = n.substr(n.rfind(':') + 1);
    names.push_back(n.substr(0, n.size() - 4));  // drop "Impl"
  }
  return names;
}

TEST(Mlp, BatchNormPlacements) {
  auto before = bm::make_mlp(bm::MlpOptions(5, 3).depth(2).width(8).batch_norm(bm::BatchNormPlacement::kBefore));
  EXPECT_EQ(layer_types(before), (std::vector<std::string>{"Linear", "BatchNorm1d", "Tanh", "Linear", "BatchNorm1d",
                                                           "Tanh", "Linear"}));
  EXPECT_FALSE(before[0]->as<torch::nn::Linear>()->bias.defined()) << "BatchNorm's β replaces the bias";
  auto after = bm::make_mlp(bm::MlpOptions(5, 3).depth(1).width(8).batch_norm(bm::BatchNormPlacement::kAfter)
                                .activation("relu"));
  EXPECT_EQ(layer_types(after), (std::vector<std::string>{"Linear", "ReLU", "BatchNorm1d", "Linear"}));
  auto none = bm::make_mlp(bm::MlpOptions(5, 3).depth(1).width(8).batch_norm(bm::BatchNormPlacement::kNone));
  EXPECT_EQ(layer_types(none), (std::vector<std::string>{"Linear", "Tanh", "Linear"}));
  EXPECT_EQ(none->forward(torch::randn({4, 5})).sizes(), (std::vector<int64_t>{4, 3}));
}

// The fused MLP is the same function with the same parameters, in the same
// order: loaded with the unfused one's values, it gives the same outputs,
// gradients and running statistics.
TEST(Mlp, FusedBatchNormIsTheSameNetwork) {
  for (const std::string activation : {"tanh", "relu", "gelu", "maxout"}) {
    auto options = bm::MlpOptions(5, 3).depth(2).width(8).activation(activation);
    torch::manual_seed(6);
    auto plain = bm::make_mlp(options);
    auto fused = bm::make_mlp(options.fuse_batch_norm(true));
    const std::vector<std::string> expected{"Linear", "BatchNormAct", "Linear", "BatchNormAct", "Linear"};
    EXPECT_EQ(layer_types(fused), expected) << activation;
    auto from = plain->parameters();
    auto to = fused->parameters();
    ASSERT_EQ(from.size(), to.size()) << activation;
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < from.size(); ++i) {
        ASSERT_EQ(from[i].sizes(), to[i].sizes()) << activation << " parameter " << i;
        from[i].normal_();
        to[i].copy_(from[i]);
      }
    }
    auto x = torch::randn({16, 5}) * 2;
    auto y_plain = plain->forward(x);
    auto y_fused = fused->forward(x);
    EXPECT_TRUE(bnlab_test::assert_close(y_fused, y_plain)) << activation;
    (y_plain * torch::arange(3)).sum().backward();
    (y_fused * torch::arange(3)).sum().backward();
    for (size_t i = 0; i < from.size(); ++i) {
      EXPECT_TRUE(bnlab_test::assert_close(to[i].grad(), from[i].grad())) << activation << " gradient " << i;
    }
    auto plain_buffers = plain->buffers();
    auto fused_buffers = fused->buffers();
    ASSERT_EQ(plain_buffers.size(), fused_buffers.size()) << activation;
    for (size_t i = 0; i < plain_buffers.size(); ++i) {
      EXPECT_TRUE(torch::allclose(fused_buffers[i].to(torch::kDouble), plain_buffers[i].to(torch::kDouble), 1e-5,
                                  1e-6))
          << activation << " buffer " << i;
    }
  }
  EXPECT_THAT(bnlab_test::error_of([] {
                bm::make_mlp(bm::MlpOptions(5, 3).batch_norm(bm::BatchNormPlacement::kAfter).fuse_batch_norm(true));
              }),
              ::testing::HasSubstr("fuse_batch_norm expects BatchNorm before the activation, got batch_norm=after"));
}

TEST(Mlp, MaxoutWidensItsLinearAndTokensGetAnEmbedding) {
  auto net = bm::make_mlp(bm::MlpOptions(3, 27).depth(2).width(16).activation("maxout")
                              .activation_options(bnlab::nn::ActivationOptions().pieces(3)).vocab_size(27)
                              .embedding_dim(10));
  EXPECT_EQ(net[2]->as<torch::nn::Linear>()->weight.sizes(), (std::vector<int64_t>{48, 30}));
  auto out = net->forward(torch::randint(27, {5, 3}));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{5, 27}));
}

TEST(Mlp, InitSchemesHaveTheirStandardDeviations) {
  torch::manual_seed(0);
  auto std_of = [](bm::InitScheme s, double gain, const std::string& act) {
    auto net = bm::make_mlp(bm::MlpOptions(400, 2).depth(1).width(400).init(s).gain(gain).activation(act)
                                .batch_norm(bm::BatchNormPlacement::kNone));
    return net[0]->as<torch::nn::Linear>()->weight.std().item<double>();
  };
  EXPECT_NEAR(std_of(bm::InitScheme::kNaive, 1, "tanh"), 1.0, 0.01);
  EXPECT_NEAR(std_of(bm::InitScheme::kKaiming, 1, "tanh"), (5.0 / 3.0) / 20.0, 0.002);
  EXPECT_NEAR(std_of(bm::InitScheme::kKaiming, 1, "relu"), std::sqrt(2.0) / 20.0, 0.002);
  EXPECT_NEAR(std_of(bm::InitScheme::kCustomGain, 4.0, "tanh"), 4.0 / 20.0, 0.002);
  // PyTorch's default: U(−1/√fan_in, 1/√fan_in), std 1/√(3·fan_in).
  EXPECT_NEAR(std_of(bm::InitScheme::kDefault, 1, "tanh"), 1.0 / std::sqrt(1200.0), 0.001);
}

TEST(Mlp, NamesAreValidated) {
  EXPECT_THAT(bnlab_test::error_of([] { bm::batch_norm_placement_from_string("middle"); }),
              ::testing::HasSubstr("expected one of none, before, after"));
  EXPECT_THAT(bnlab_test::error_of([] { bm::init_scheme_from_string("xavier"); }),
              ::testing::HasSubstr("expected one of default, kaiming, naive, gain"));
  EXPECT_ANY_THROW(bm::make_mlp(bm::MlpOptions(5, 3).activation("swish")));
}

}  // namespace
