// The activation kernels' same-pass statistics, for every CPU capability this
// machine runs, against values computed independently from the tensors.
#include "kernels/activation.h"
#include "kernels/cpu/activation_kernel.h"

#include "bnlab/nn/probe.h"

#include "assert_close.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace {

using bnlab::autograd::ActivationKind;
using bnlab::autograd::ActivationParams;
using bnlab_test::assert_close;
namespace slot = bnlab::nn::activation_stat;
namespace cpu = bnlab::kernels::cpu;

std::vector<ActivationParams> all_params() {
  std::vector<ActivationParams> out;
  for (auto kind : {ActivationKind::kTanh, ActivationKind::kSigmoid, ActivationKind::kSoftsign,
                    ActivationKind::kHardtanh, ActivationKind::kReLU, ActivationKind::kLeakyReLU,
                    ActivationKind::kELU, ActivationKind::kGELU, ActivationKind::kGELUTanh,
                    ActivationKind::kSiLU}) {
    ActivationParams p;
    p.kind = kind;
    p.alpha = 0.8;
    out.push_back(p);
  }
  return out;
}

// Inputs with some units (dim 1) pushed deep into saturation on every
// element, so dead units exist for the saturating kinds.
torch::Tensor make_input(std::vector<int64_t> shape, torch::ScalarType dtype) {
  auto x = torch::randn(shape, torch::kDouble) * 2.5;
  auto shift = torch::zeros({shape[1]}, torch::kDouble);
  shift[0] = -40.0;  // far left: saturated for tanh/sigmoid/relu/elu/gelu/silu/...
  if (shape[1] > 2) shift[2] = 40.0;
  std::vector<int64_t> view(shape.size(), 1);
  view[1] = shape[1];
  return (x + shift.view(view)).to(dtype);
}

struct KernelCase {
  std::vector<int64_t> shape;
  std::string layout;
};

class ActivationKernelStats : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    const int c = GetParam();
    if (c > static_cast<int>(cpu::cpu_capability())) GTEST_SKIP() << "this CPU lacks the capability";
    forward_ = cpu::activation_forward_stub.variants[static_cast<size_t>(c)];
    backward_ = cpu::activation_backward_stub.variants[static_cast<size_t>(c)];
    ASSERT_NE(forward_, nullptr);
    ASSERT_NE(backward_, nullptr);
  }
  cpu::ActivationForwardFn forward_ = nullptr;
  cpu::ActivationBackwardFn backward_ = nullptr;
};

TEST_P(ActivationKernelStats, ForwardSlotsEqualIndependentValues) {
  torch::manual_seed(21);
  const std::vector<KernelCase> cases{{{64, 5}, "contiguous"},
                                      {{6, 7, 33}, "contiguous"},
                                      {{4, 5, 6, 7}, "contiguous"},
                                      {{4, 5, 6, 7}, "channels_last"},
                                      {{3, 37}, "contiguous"},
                                      // Several of the kernel's 2048-element chunks (rows, then
                                      // blocks of one unit): a dead unit must span them all.
                                      {{1000, 5}, "contiguous"},
                                      {{300, 37}, "contiguous"},
                                      {{6, 7, 500}, "contiguous"},
                                      {{2, 3, 3000}, "contiguous"}};
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    for (const auto& kc : cases) {
      auto x = make_input(kc.shape, dtype);
      if (kc.layout == "channels_last") x = x.contiguous(torch::MemoryFormat::ChannelsLast);
      const auto layout = bnlab::kernels::unit_layout(x);
      ASSERT_TRUE(layout.has_value());
      for (const auto& p : all_params()) {
        SCOPED_TRACE(::testing::Message() << "kind " << static_cast<int>(p.kind) << " shape "
                                          << x.sizes() << " " << kc.layout << " " << dtype);
        auto y = torch::empty_like(x);
        auto stats = torch::zeros({slot::kCount}, torch::kDouble);
        forward_(x, y, p, *layout, stats.data_ptr<double>());
        // The output equals the plain kernel's and the composite formula's.
        auto y_plain = torch::empty_like(x);
        forward_(x, y_plain, p, *layout, nullptr);
        EXPECT_TRUE(torch::equal(y, y_plain));
        EXPECT_TRUE(assert_close(y, bnlab::kernels::activation_composite(x, p)));
        // Counts, computed here from the rule on the kernel's own output.
        auto sat = bnlab::kernels::activation_saturated(x, y, p);
        EXPECT_EQ(stats[slot::kSaturated].item<double>(), sat.sum().item<double>());
        auto dead = sat.transpose(0, 1).reshape({x.size(1), -1}).all(1).sum().item<double>();
        EXPECT_EQ(stats[slot::kDeadUnits].item<double>(), dead);
        if (p.kind != ActivationKind::kLeakyReLU && p.kind != ActivationKind::kSoftsign &&
            p.kind != ActivationKind::kHardtanh) {
          EXPECT_GE(dead, 1.0) << "the test input should have a dead unit";
        }
        auto xd = x.to(torch::kDouble);
        auto yd = y.to(torch::kDouble);
        const bool from_y = bnlab::autograd::derivative_from_output(p.kind);
        auto deriv = bnlab::kernels::activation_derivative(from_y ? torch::Tensor() : xd,
                                                           from_y ? yd : torch::Tensor(), p);
        const double rtol = dtype == torch::kFloat ? 2e-5 : 1e-10;
        EXPECT_NEAR(stats[slot::kDerivativeSum].item<double>(), deriv.sum().item<double>(),
                    rtol * deriv.abs().sum().item<double>() + 1e-6);
        EXPECT_NEAR(stats[slot::kInputSum].item<double>(), xd.sum().item<double>(),
                    rtol * xd.abs().sum().item<double>());
        EXPECT_NEAR(stats[slot::kInputSumSq].item<double>(), (xd * xd).sum().item<double>(),
                    rtol * (xd * xd).sum().item<double>());
        EXPECT_NEAR(stats[slot::kOutputSum].item<double>(), yd.sum().item<double>(),
                    rtol * yd.abs().sum().item<double>() + 1e-6);
        EXPECT_NEAR(stats[slot::kOutputSumSq].item<double>(), (yd * yd).sum().item<double>(),
                    rtol * (yd * yd).sum().item<double>() + 1e-6);
        EXPECT_EQ(stats[slot::kNonFiniteOutput].item<double>(), 0.0);
      }
    }
  }
}

TEST_P(ActivationKernelStats, NonFiniteValuesAreCounted) {
  auto x = torch::randn({3, 8});
  x[0][1] = std::numeric_limits<float>::quiet_NaN();
  x[2][5] = std::numeric_limits<float>::infinity();
  ActivationParams p;
  p.kind = ActivationKind::kLeakyReLU;  // keeps NaN and +Inf in the output
  auto y = torch::empty_like(x);
  auto stats = torch::zeros({slot::kCount}, torch::kDouble);
  forward_(x, y, p, *bnlab::kernels::unit_layout(x), stats.data_ptr<double>());
  EXPECT_EQ(stats[slot::kNonFiniteOutput].item<double>(), 2.0);
  auto gy = torch::ones_like(x);
  auto gx = torch::empty_like(x);
  gy[1][1] = std::numeric_limits<float>::infinity();
  backward_(gy, x, gx, p, stats.data_ptr<double>());
  EXPECT_EQ(stats[slot::kNonFiniteGradInput].item<double>(), 1.0);
}

TEST_P(ActivationKernelStats, BackwardSlotsEqualIndependentValues) {
  torch::manual_seed(22);
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    for (const auto& p : all_params()) {
      auto x = make_input({7, 6, 11}, dtype);
      auto y = bnlab::kernels::activation_composite(x, p);
      const bool from_y = bnlab::autograd::derivative_from_output(p.kind);
      auto gy = torch::randn(x.sizes(), dtype);
      auto gx = torch::empty_like(x);
      auto stats = torch::zeros({slot::kCount}, torch::kDouble);
      backward_(gy, from_y ? y : x, gx, p, stats.data_ptr<double>());
      auto expected = gy * bnlab::kernels::activation_derivative(from_y ? torch::Tensor() : x,
                                                                 from_y ? y : torch::Tensor(), p);
      EXPECT_TRUE(assert_close(gx, expected));
      const double rtol = dtype == torch::kFloat ? 2e-5 : 1e-10;
      const double gy2 = gy.to(torch::kDouble).pow(2).sum().item<double>();
      const double gx2 = gx.to(torch::kDouble).pow(2).sum().item<double>();
      EXPECT_NEAR(stats[slot::kGradOutputSumSq].item<double>(), gy2, rtol * gy2);
      EXPECT_NEAR(stats[slot::kGradInputSumSq].item<double>(), gx2, rtol * gx2 + 1e-12);
    }
  }
}

TEST_P(ActivationKernelStats, ManyThreadsGiveTheSameStatistics) {
  // The kernels keep up to 16 threads' sums inline and more on the heap: with
  // 20 threads and an input of 20 of the kernels' 32768-element grains, threads
  // past the 16th get work, and the statistics must not change.
  const int previous_threads = torch::get_num_threads();
  torch::manual_seed(29);
  auto x = make_input({6600, 100}, torch::kFloat);
  ActivationParams p;  // tanh
  const auto layout = bnlab::kernels::unit_layout(x);
  ASSERT_TRUE(layout.has_value());
  auto gy = torch::randn(x.sizes());
  std::vector<torch::Tensor> stats;
  for (const int threads : {1, 20}) {
    torch::set_num_threads(threads);
    auto y = torch::empty_like(x);
    auto gx = torch::empty_like(x);
    stats.push_back(torch::zeros({slot::kCount}, torch::kDouble));
    forward_(x, y, p, *layout, stats.back().data_ptr<double>());
    backward_(gy, y, gx, p, stats.back().data_ptr<double>());
  }
  torch::set_num_threads(previous_threads);
  for (const auto s : {slot::kSaturated, slot::kDeadUnits, slot::kNonFiniteOutput, slot::kNonFiniteGradInput}) {
    EXPECT_EQ(stats[1][s].item<double>(), stats[0][s].item<double>()) << "slot " << s;
  }
  // Sums: the same terms, grouped otherwise (float vector sums flushed to double every 256 vectors).
  for (const auto s : {slot::kDerivativeSum, slot::kInputSum, slot::kInputSumSq, slot::kOutputSum, slot::kOutputSumSq,
                       slot::kGradOutputSumSq, slot::kGradInputSumSq}) {
    EXPECT_NEAR(stats[1][s].item<double>(), stats[0][s].item<double>(),
                1e-5 * std::abs(stats[0][s].item<double>()) + 1e-3) << "slot " << s;
  }
}

// Float tanh has its own fast evaluation on AVX2/AVX-512 (kernels/cpu/fast_tanh.h;
// 1.25 ulp at worst when written):
// over every 509th float in [−12, 12] (both branches, the switch at 0.625 and the
// cap), it stays within 2 ulp of tanh evaluated in double, and keeps NaN, ±Inf,
// ±0 and denormals right.
using FastTanh = ActivationKernelStats;

TEST_P(FastTanh, FloatTanhIsWithinTwoUlpOfExact) {
  std::vector<float> values;
  const auto bits_of = [](float f) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    return b;
  };
  for (uint32_t b = 0; b <= bits_of(12.0f); b += 509) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    values.push_back(f);
    values.push_back(-f);
  }
  const float specials[] = {0.625f, std::nextafter(0.625f, 0.0f), 10.0f, 9.0f, 1e-30f, 1e-40f, -0.0f,
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::max(), std::numeric_limits<float>::quiet_NaN()};
  values.insert(values.end(), std::begin(specials), std::end(specials));
  while (values.size() % 64 != 0) values.push_back(0.5f);
  auto x = torch::from_blob(values.data(), {static_cast<int64_t>(values.size()) / 64, 64}).clone();
  auto y = torch::empty_like(x);
  ActivationParams p;
  p.kind = ActivationKind::kTanh;
  forward_(x, y, p, *bnlab::kernels::unit_layout(x), nullptr);
  const float* xs = x.data_ptr<float>();
  const float* ys = y.data_ptr<float>();
  double worst = 0.0;
  float worst_x = 0.0f;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double exact = std::tanh(static_cast<double>(xs[i]));
    if (std::isnan(xs[i])) {
      EXPECT_TRUE(std::isnan(ys[i]));
      continue;
    }
    ASSERT_EQ(std::signbit(ys[i]), std::signbit(xs[i])) << "x = " << xs[i];
    // One ulp at |exact|: the spacing of floats in its binade (denormals: 2^-149).
    const float magnitude = static_cast<float>(std::fabs(exact));
    const double ulp = magnitude < std::numeric_limits<float>::min()
                           ? std::ldexp(1.0, -149)
                           : std::ldexp(1.0, std::ilogb(magnitude) - 23);
    const double error = std::fabs(static_cast<double>(ys[i]) - exact) / ulp;
    if (error > worst) {
      worst = error;
      worst_x = xs[i];
    }
  }
  EXPECT_LE(worst, 2.0) << "worst at x = " << worst_x << " (" << values.size() << " values)";
}

// DEFAULT keeps Vectorized<float>::tanh (std::tanh per lane).
INSTANTIATE_TEST_SUITE_P(Capabilities, FastTanh, ::testing::Values(1, 2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(cpu::capability_name(static_cast<cpu::Capability>(info.param)));
                         });

INSTANTIATE_TEST_SUITE_P(Capabilities, ActivationKernelStats, ::testing::Values(0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(cpu::capability_name(static_cast<cpu::Capability>(info.param)));
                         });

TEST(ActivationSample, SmallInputsAreCopiedWholeAndQuantilesMatchTorch) {
  torch::manual_seed(23);
  auto x = torch::randn({37, 11});
  auto sample = torch::empty({bnlab::nn::kProbeSampleSize});
  auto stats = torch::zeros({slot::kCount}, torch::kDouble);
  bnlab::kernels::copy_input_sample(x, sample, stats);
  ASSERT_EQ(stats[slot::kSampleCount].item<double>(), 407.0);
  EXPECT_TRUE(torch::equal(sample.narrow(0, 0, 407), x.reshape(-1)));
  const std::vector<double> qs{0.15, 0.5, 0.85};
  auto ours = bnlab::nn::sample_quantiles(sample.data_ptr<float>(), 407, qs);
  auto theirs = torch::quantile(x.to(torch::kDouble).reshape(-1), torch::tensor(qs, torch::kDouble));
  EXPECT_TRUE(assert_close(torch::tensor(ours, torch::kDouble), theirs, {1e-12, 1e-12}));
}

TEST(ActivationSample, LargeInputsGiveAnEvenlyStridedSample) {
  torch::manual_seed(24);
  auto x = torch::randn({300, 1000}, torch::kDouble);
  auto sample = torch::empty({bnlab::nn::kProbeSampleSize});
  auto stats = torch::zeros({slot::kCount}, torch::kDouble);
  bnlab::kernels::copy_input_sample(x, sample, stats);
  // The smallest stride ≥ ⌈n/capacity⌉ = 74 coprime with the 1000 values per
  // example: 77 (74, 75 and 76 share a factor 2 or 5 with 1000).
  int64_t stride = (x.numel() + bnlab::nn::kProbeSampleSize - 1) / bnlab::nn::kProbeSampleSize;
  while (std::gcd(stride, int64_t{1000}) != 1) ++stride;
  ASSERT_EQ(stride, 77);
  auto expected = x.reshape(-1).slice(0, 0, x.numel(), stride).to(torch::kFloat);
  ASSERT_EQ(stats[slot::kSampleCount].item<double>(), static_cast<double>(expected.numel()));
  EXPECT_TRUE(torch::equal(sample.narrow(0, 0, expected.numel()), expected));
  // The sample's percentiles estimate the full ones (N(0,1): ±0.05 at 4k samples).
  const std::vector<double> qs{0.15, 0.5, 0.85};
  auto est = bnlab::nn::sample_quantiles(sample.data_ptr<float>(), expected.numel(), qs);
  auto full = torch::quantile(x.reshape(-1).slice(0, 0, 1 << 20), torch::tensor(qs, torch::kDouble));
  EXPECT_TRUE(assert_close(torch::tensor(est, torch::kDouble), full, {0.0, 0.06}));
}

// The values each (unit, position) of an example holds: its index in the
// example, the same in every example, so a sample's distinct values say which
// units and positions it reached.
torch::Tensor position_ids(at::IntArrayRef shape) {
  const int64_t per_example = c10::multiply_integers(shape.begin() + 1, shape.end());
  std::vector<int64_t> example_shape(shape.begin() + 1, shape.end());
  return torch::arange(per_example, torch::kFloat).reshape(example_shape).expand(shape).contiguous();
}

int64_t distinct_values(const torch::Tensor& sample, const torch::Tensor& stats) {
  const auto count = static_cast<int64_t>(stats[slot::kSampleCount].item<double>());
  return std::get<0>(at::_unique(sample.narrow(0, 0, count))).numel();
}

TEST(ActivationSample, LargeInputsAreSampledAcrossEveryUnit) {
  // (128, 128): 16384 values for 4096 places. Every fourth value would keep
  // only the units 0, 4, 8, …; a stride coprime with 128 (5) reaches all.
  auto x = position_ids({128, 128});
  auto sample = torch::empty({bnlab::nn::kProbeSampleSize});
  auto stats = torch::zeros({slot::kCount}, torch::kDouble);
  bnlab::kernels::copy_input_sample(x, sample, stats);
  EXPECT_LE(stats[slot::kSampleCount].item<double>(), bnlab::nn::kProbeSampleSize);
  EXPECT_EQ(distinct_values(sample, stats), 128);
  // So its percentiles are those of all the units: each unit holds 25 or 26 of
  // the 3277 values, so a rank moves by less than one unit's share.
  const std::vector<double> qs{0.15, 0.5, 0.85};
  const auto count = static_cast<int64_t>(stats[slot::kSampleCount].item<double>());
  auto est = bnlab::nn::sample_quantiles(sample.data_ptr<float>(), count, qs);
  auto full = torch::quantile(x.to(torch::kDouble).reshape(-1), torch::tensor(qs, torch::kDouble));
  EXPECT_TRUE(assert_close(torch::tensor(est, torch::kDouble), full, {0.0, 1.0}));
}

TEST(ActivationSample, ConvInputsAreSampledAcrossEveryChannelAndPosition) {
  // (8, 16, 16, 16): 4096 values per example, 32768 in all. Stride 8 would
  // keep two columns of every channel (512 of the 4096 places); stride 9,
  // coprime with 4096, keeps ⌈32768/9⌉ = 3641 values, each at a different
  // place (i·9 mod 4096 repeats only after 4096 steps). The same holds in the
  // channels-last layout, whose examples are as long.
  for (const bool channels_last : {false, true}) {
    SCOPED_TRACE(channels_last ? "channels_last" : "contiguous");
    auto x = position_ids({8, 16, 16, 16});
    if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    auto sample = torch::empty({bnlab::nn::kProbeSampleSize});
    auto stats = torch::zeros({slot::kCount}, torch::kDouble);
    bnlab::kernels::copy_input_sample(x, sample, stats);
    EXPECT_EQ(stats[slot::kSampleCount].item<double>(), 3641.0);
    EXPECT_EQ(distinct_values(sample, stats), 3641);
  }
}

TEST(ActivationSample, AnEmptySampleKeepsNothing) {
  auto x = torch::randn({8, 5});
  auto sample = torch::empty({0});
  auto stats = torch::zeros({slot::kCount}, torch::kDouble);
  bnlab::kernels::copy_input_sample(x, sample, stats);
  EXPECT_EQ(stats[slot::kSampleCount].item<double>(), 0.0);
}

TEST(ActivationSample, QuantilesOfClusteredAndTiedValuesMatchTorch) {
  // The selection buckets values by their top bits, then by the next ones:
  // values crowded into one bucket, many ties, both signs with ±0 and
  // denormals exercise every level of it.
  torch::manual_seed(26);
  const int64_t n = bnlab::nn::kProbeSampleSize;
  std::vector<std::pair<std::string, torch::Tensor>> cases = {
      {"crowded in [1, 1.1)", 1.0 + 0.1 * torch::rand({n})},
      {"crowded in [1, 1 + 1e-5)", 1.0 + 1e-5 * torch::rand({n})},
      {"five distinct values", torch::randint(0, 5, {n}).to(torch::kFloat) + 3.0},
      {"all equal", torch::full({n}, -2.5)},
      {"signs, zeros and denormals",
       torch::cat({torch::randn({n - 6}), torch::tensor({0.0f, -0.0f, 1e-40f, -1e-40f, -1e30f, 1e30f})})},
  };
  const std::vector<double> qs{0.0, 0.15, 0.5, 0.85, 1.0, 0.333};
  for (const auto& [name, values] : cases) {
    SCOPED_TRACE(name);
    auto x = values.to(torch::kFloat).contiguous();
    auto ours = bnlab::nn::sample_quantiles(x.data_ptr<float>(), x.numel(), qs);
    auto theirs = torch::quantile(x.to(torch::kDouble), torch::tensor(qs, torch::kDouble));
    EXPECT_TRUE(assert_close(torch::tensor(ours, torch::kDouble), theirs, {1e-12, 0.0}));
  }
}

TEST(ActivationSample, ManyQuantilesAtOnceMatchTorch) {
  // More ranks than the selection keeps per call (two per quantile, 64 per
  // call): they go through it in several calls.
  torch::manual_seed(27);
  auto x = torch::randn({3200});
  std::vector<double> qs;
  for (int k = 0; k <= 100; ++k) qs.push_back(k / 100.0);
  auto ours = bnlab::nn::sample_quantiles(x.data_ptr<float>(), x.numel(), qs);
  auto theirs = torch::quantile(x.to(torch::kDouble), torch::tensor(qs, torch::kDouble));
  EXPECT_TRUE(assert_close(torch::tensor(ours, torch::kDouble), theirs, {1e-12, 0.0}));
}

TEST(ActivationSample, QuantilesMatchTorchAcrossSizesAndSpreads) {
  // The selection sizes its buckets by the input's length and key range:
  // lengths around its switch to direct selection (32) and powers of two,
  // values spread over many octaves, crowded into a sliver of one, or tied,
  // reach each of its bucket widths and levels.
  torch::manual_seed(28);
  const std::vector<double> qs{0.0, 0.01, 0.15, 0.5, 0.85, 0.99, 1.0};
  for (const int64_t n : {1, 2, 3, 31, 32, 33, 64, 65, 127, 458, 1023, 1024, 1025, 3200, 4097, 20000}) {
    const std::vector<std::pair<std::string, torch::Tensor>> cases = {
        {"normal", torch::randn({n})},
        {"over 60 octaves", torch::exp(20.0 * torch::randn({n})) * torch::sign(torch::randn({n}))},
        {"crowded in [7, 7 + 1e-4)", 7.0 + 1e-4 * torch::rand({n})},
        {"three tied values", torch::randint(-1, 2, {n}).to(torch::kFloat)},
        {"cauchy", torch::randn({n}) / torch::randn({n})},
    };
    for (const auto& [name, values] : cases) {
      SCOPED_TRACE(name + ", n = " + std::to_string(n));
      auto x = values.to(torch::kFloat).contiguous();
      auto ours = bnlab::nn::sample_quantiles(x.data_ptr<float>(), n, qs);
      auto theirs = torch::quantile(x.to(torch::kDouble), torch::tensor(qs, torch::kDouble));
      EXPECT_TRUE(assert_close(torch::tensor(ours, torch::kDouble), theirs, {1e-12, 0.0}));
    }
  }
}

TEST(ActivationSample, NaNGivesNaNQuantiles) {
  std::vector<float> v{1.0f, std::nanf(""), 3.0f};
  auto q = bnlab::nn::sample_quantiles(v.data(), 3, {0.5});
  EXPECT_TRUE(std::isnan(q[0]));
  EXPECT_TRUE(std::isnan(bnlab::nn::sample_quantiles(v.data(), 0, {0.5})[0]));
}

TEST(ActivationForward, CompositePathFillsTheSameSlots) {
  // bfloat16 has no CPU kernel: the composite path must give the same counts.
  torch::manual_seed(25);
  auto x = make_input({16, 4}, torch::kFloat).to(torch::kBFloat16);
  ActivationParams p;
  p.kind = ActivationKind::kTanh;
  auto y = torch::empty_like(x);
  auto stats = torch::zeros({slot::kCount}, torch::kDouble);
  bnlab::kernels::activation_forward(x, y, p, stats);
  auto sat = bnlab::kernels::activation_saturated(x, y, p);
  EXPECT_EQ(stats[slot::kSaturated].item<double>(), sat.sum().item<double>());
  // Units 0 (shifted to −40) and 2 (+40) sit on tanh's flat parts everywhere.
  EXPECT_EQ(stats[slot::kDeadUnits].item<double>(), 2.0);
  EXPECT_EQ(stats[slot::kUnits].item<double>(), 4.0);
  EXPECT_EQ(stats[slot::kInputCount].item<double>(), 64.0);
}

}  // namespace
