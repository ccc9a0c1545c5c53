// bnlab::nn::BatchNormAct against BatchNorm{1,2,3}d followed by the activation
// module (both checked against PyTorch in their own tests), and as a module.
#include "bnlab/nn/modules/batch_norm_act.h"

#include "bnlab/autograd/batch_norm_act.h"
#include "bnlab/nn/functional/batch_norm_act.h"
#include "bnlab/nn/modules/batch_norm.h"
#include "bnlab/train/recorder.h"

#include "assert_close.h"
#include "errors.h"
#include "gradcheck.h"

#include "scratch_dir.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

namespace {

using bnlab_test::assert_close;
using bnlab_test::default_tolerance;
namespace bn = bnlab::nn;

struct ActivationCase {
  std::string name;
  bn::ActivationOptions options;
};

std::vector<ActivationCase> activation_cases() {
  return {{"tanh", {}},
          {"sigmoid", {}},
          {"softsign", {}},
          {"hardtanh", bn::ActivationOptions().min_val(-0.5).max_val(1.5)},
          {"relu", {}},
          {"leaky_relu", bn::ActivationOptions().negative_slope(0.2)},
          {"elu", bn::ActivationOptions().alpha(0.7)},
          {"gelu", {}},
          {"gelu", bn::ActivationOptions().approximate("tanh")},
          {"silu", {}}};
}

// The reference: BatchNorm of the input's dimensionality, then the activation.
struct Sequential {
  torch::nn::AnyModule norm;
  torch::nn::AnyModule act;
  std::shared_ptr<torch::nn::Module> norm_module;
  torch::Tensor forward(const torch::Tensor& x) { return act.forward(norm.forward(x)); }
};

Sequential make_sequential(int64_t dim, const bn::BatchNormOptions& o, const ActivationCase& a) {
  Sequential s;
  if (dim <= 3) {
    bn::BatchNorm1d m(o);
    s.norm = torch::nn::AnyModule(m);
    s.norm_module = m.ptr();
  } else if (dim == 4) {
    bn::BatchNorm2d m(o);
    s.norm = torch::nn::AnyModule(m);
    s.norm_module = m.ptr();
  } else {
    bn::BatchNorm3d m(o);
    s.norm = torch::nn::AnyModule(m);
    s.norm_module = m.ptr();
  }
  s.act = bn::make_activation(a.name, a.options);
  return s;
}

// A probe as a recorder attaches it to an activation layer: a stats row and a sample.
std::shared_ptr<bn::LayerProbe> make_activation_probe() {
  auto p = std::make_shared<bn::LayerProbe>();
  p->stats = torch::zeros({bn::activation_stat::kCount}, torch::kDouble);
  p->sample = torch::zeros({bn::kProbeSampleSize}, torch::kFloat);
  return p;
}

// Same parameters and running statistics in both (random, so γ and β matter).
void copy_state(const bn::BatchNormAct& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto params = to.named_parameters();
  auto buffers = to.named_buffers();
  for (const auto& p : from->named_parameters()) params[p.key()].copy_(p.value());
  for (const auto& b : from->named_buffers()) buffers[b.key()].copy_(b.value());
}

void randomize(bn::BatchNormAct& m) {
  torch::NoGradGuard no_grad;
  if (m->weight.defined()) m->weight.uniform_(0.5, 1.5);
  if (m->bias.defined()) m->bias.uniform_(-0.5, 0.5);
  if (m->running_mean.defined()) {
    m->running_mean.uniform_(-0.3, 0.3);
    m->running_var.uniform_(0.5, 2.0);
  }
}

torch::Tensor with_layout(const torch::Tensor& t, const std::string& layout) {
  if (layout == "channels_last") return t.contiguous(t.dim() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d);
  if (layout == "strided") {
    // Every other element of a wider tensor: not dense.
    auto wide = torch::empty({t.size(0), t.size(1) * 2}, t.options());
    auto view = wide.slice(1, 0, t.size(1) * 2, 2);
    if (t.dim() > 2) {
      auto shape = t.sizes().vec();
      shape[1] *= 2;
      wide = torch::empty(shape, t.options());
      view = wide.slice(1, 0, shape[1], 2);
    }
    view.copy_(t);
    return view;
  }
  return t;
}

struct LayoutCase {
  std::vector<int64_t> shape;
  std::string layout;
};

// Inputs whose channels have different means and spreads.
torch::Tensor make_input(const std::vector<int64_t>& shape, torch::Dtype dtype) {
  auto x = torch::randn(shape, torch::TensorOptions().dtype(torch::kDouble));
  std::vector<int64_t> view(shape.size(), 1);
  view[1] = shape[1];
  auto scale = torch::linspace(0.5, 2.0, shape[1], torch::kDouble).view(view);
  auto shift = torch::linspace(-1.0, 1.0, shape[1], torch::kDouble).view(view);
  return (x * scale + shift).to(dtype);
}

class BatchNormActEquivalence : public ::testing::TestWithParam<torch::Dtype> {};

TEST_P(BatchNormActEquivalence, EqualsBatchNormThenActivation) {
  const torch::Dtype dtype = GetParam();
  torch::manual_seed(11);
  const std::vector<LayoutCase> layouts = {{{16, 6}, "contiguous"},       {{9, 5}, "strided"},
                                           {{4, 6, 7}, "contiguous"},     {{3, 5, 4, 6}, "contiguous"},
                                           {{3, 5, 4, 6}, "channels_last"}, {{2, 3, 5, 4, 6}, "contiguous"},
                                           {{2, 3, 5, 4, 6}, "channels_last"}, {{2, 17, 3, 3}, "contiguous"},
                                           // Rows of many vectors (the row-major walks), over several row blocks.
                                           {{130, 70}, "contiguous"},        {{3, 70, 5, 7}, "channels_last"}};
  for (const auto& a : activation_cases()) {
    for (const auto& lc : layouts) {
      for (bool training : {true, false}) {
        for (bool affine : {true, false}) {
          for (bool track : {true, false}) {
            if (!training && !track) continue;  // eval without running statistics uses batch ones: covered by training
            const std::string what = a.name + " " + lc.layout + " " + c10::str(c10::IntArrayRef(lc.shape)) +
                                     (training ? " train" : " eval") + (affine ? " affine" : "") +
                                     (track ? " tracked" : "");
            SCOPED_TRACE(what);
            auto fused_options = bn::BatchNormActOptions(lc.shape[1])
                                     .affine(affine)
                                     .track_running_stats(track)
                                     .momentum(0.3)
                                     .activation(a.name)
                                     .activation_options(a.options);
            bn::BatchNormAct fused(fused_options);
            fused->to(dtype);
            randomize(fused);
            auto seq = make_sequential(static_cast<int64_t>(lc.shape.size()), fused_options.batch_norm(), a);
            seq.norm_module->to(dtype);
            copy_state(fused, *seq.norm_module);
            fused->train(training);
            seq.norm_module->train(training);

            const auto x0 = make_input(lc.shape, dtype);
            auto x1 = with_layout(x0.clone(), lc.layout).requires_grad_(true);
            auto x2 = with_layout(x0.clone(), lc.layout).requires_grad_(true);
            auto y1 = fused->forward(x1);
            auto y2 = seq.forward(x2);
            const auto tol = default_tolerance(dtype);
            ASSERT_TRUE(assert_close(y1, y2, tol, nullptr, "output"));
            auto g = torch::randn_like(y2);
            y1.backward(g);
            y2.backward(g);
            EXPECT_TRUE(assert_close(x1.grad(), x2.grad(), tol, nullptr, "grad input"));
            auto p2 = seq.norm_module->named_parameters();
            if (affine) {
              EXPECT_TRUE(assert_close(fused->weight.grad(), p2["weight"].grad(), tol, nullptr, "grad weight"));
              EXPECT_TRUE(assert_close(fused->bias.grad(), p2["bias"].grad(), tol, nullptr, "grad bias"));
            }
            auto b2 = seq.norm_module->named_buffers();
            if (track) {
              EXPECT_TRUE(assert_close(fused->running_mean, b2["running_mean"], tol, nullptr, "running_mean"));
              EXPECT_TRUE(assert_close(fused->running_var, b2["running_var"], tol, nullptr, "running_var"));
              EXPECT_EQ(fused->num_batches_tracked.item<int64_t>(), b2["num_batches_tracked"].item<int64_t>());
            }
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, BatchNormActEquivalence, ::testing::Values(torch::kFloat, torch::kDouble),
                         [](const auto& info) { return std::string(c10::toString(info.param)); });

TEST(BatchNormAct, ChannelsTooLargeToCacheRecomputeTheGradient) {
  // 2·300·500 = 300000 values per channel: more than the backward keeps in
  // its per-thread buffer, so dz is recomputed in the second pass.
  torch::manual_seed(17);
  for (const std::string name : {"tanh", "gelu"}) {
    SCOPED_TRACE(name);
    bn::BatchNormAct fused(bn::BatchNormActOptions(2).activation(name));
    randomize(fused);
    bn::BatchNorm2d norm(2);
    copy_state(fused, *norm);
    auto act = bn::make_activation(name);
    auto x1 = make_input({2, 2, 300, 500}, torch::kFloat).requires_grad_(true);
    auto x2 = x1.detach().clone().requires_grad_(true);
    auto y1 = fused->forward(x1);
    auto y2 = act.forward(norm->forward(x2));
    auto g = torch::randn_like(y1);
    y1.backward(g);
    y2.backward(g);
    EXPECT_TRUE(assert_close(y1, y2));
    EXPECT_TRUE(assert_close(x1.grad(), x2.grad()));
    EXPECT_TRUE(assert_close(fused->weight.grad(), norm->weight.grad()));
  }
}

TEST(BatchNormAct, MaxoutRunsAsBatchNormThenMaxout) {
  torch::manual_seed(3);
  bn::BatchNormAct fused(bn::BatchNormActOptions(6).activation("maxout").activation_options(
      bn::ActivationOptions().pieces(3)));
  randomize(fused);
  bn::BatchNorm1d norm(6);
  copy_state(fused, *norm);
  bn::Maxout maxout(bn::MaxoutOptions(3));
  auto x = make_input({8, 6}, torch::kFloat);
  auto y1 = fused->forward(x);
  auto y2 = maxout->forward(norm->forward(x));
  EXPECT_EQ(y1.sizes(), (std::vector<int64_t>{8, 2}));
  EXPECT_TRUE(assert_close(y1, y2));
  EXPECT_TRUE(assert_close(fused->running_var, norm->running_var));
}

TEST(BatchNormAct, GradcheckAndGradgradcheckInFloat64) {
  torch::manual_seed(5);
  const std::vector<ActivationCase> cases = {{"tanh", {}}, {"elu", {}}, {"gelu", {}}, {"softsign", {}},
                                             {"sigmoid", {}}};
  for (const auto& a : cases) {
    for (bool training : {true, false}) {
      SCOPED_TRACE(a.name + (training ? " train" : " eval"));
      auto params = bn::BatchNormAct(bn::BatchNormActOptions(3).activation(a.name).activation_options(a.options))
                        ->elementwise_params()
                        .value();
      auto x = make_input({4, 3, 2}, torch::kDouble).requires_grad_(true);
      auto w = torch::rand({3}, torch::kDouble).add_(0.5).requires_grad_(true);
      auto b = torch::randn({3}, torch::kDouble).mul_(0.3).requires_grad_(true);
      auto rm = torch::randn({3}, torch::kDouble);
      auto rv = torch::rand({3}, torch::kDouble).add_(0.5);
      auto fn = [&](const torch::autograd::variable_list& in) -> torch::autograd::variable_list {
        // Fresh copies of the running statistics: the op must be a pure function of its inputs.
        return {bnlab::functional::batch_norm_act(in[0], training ? torch::Tensor() : rm.clone(),
                                                  training ? torch::Tensor() : rv.clone(), in[1], in[2], training,
                                                  0.1, 1e-5, params)};
      };
      EXPECT_TRUE(bnlab_test::gradcheck(fn, {x, w, b}));
      EXPECT_TRUE(bnlab_test::gradgradcheck(fn, {x, w, b}));
    }
  }
}

TEST(BatchNormAct, ProbeStatisticsEqualTheActivationModulesOnTheNormalizedInput) {
  torch::manual_seed(7);
  for (const std::string layout : {"contiguous", "channels_last"}) {
    for (const std::string name : {"tanh", "relu", "gelu"}) {
      SCOPED_TRACE(name + " " + layout);
      bn::BatchNormAct fused(bn::BatchNormActOptions(5).activation(name));
      randomize(fused);
      bn::BatchNorm2d norm(5);
      copy_state(fused, *norm);
      auto act = bn::make_activation(name);
      auto* act_layer = dynamic_cast<bn::ActivationLayer*>(act.ptr().get());
      auto p1 = make_activation_probe();
      auto p2 = make_activation_probe();
      fused->set_probe(p1);
      act_layer->set_probe(p2);
      // 3·5·16·16 = 3840 values: every z lands in the sample.
      auto x = with_layout(make_input({3, 5, 16, 16}, torch::kFloat).mul_(2.5), layout).requires_grad_(true);
      auto y1 = fused->forward(x);
      auto z = norm->forward(x);
      auto y2 = act.forward(z);
      auto g = torch::randn_like(y1);
      y1.backward(g);
      y2.backward(g);
      // Same slots, up to summation order (float32 data summed in double).
      EXPECT_TRUE(assert_close(p1->stats, p2->stats, {1e-5, 1e-6})) << p1->stats << p2->stats;
      EXPECT_GT(p1->stats[bn::activation_stat::kSaturated].item<double>(), 0);
      // The sample holds every z (the order may differ: the fused op samples in memory order).
      EXPECT_TRUE(assert_close(std::get<0>(p1->sample.sort()), std::get<0>(p2->sample.sort()), {1e-6, 1e-6}));
    }
  }
}

TEST(BatchNormAct, LargeInputsAreSampledAtTheActivationModulesPositions) {
  // (8, 16, 16, 16) holds 32768 values for 4096 places: both take every 9th
  // (the stride coprime with the 4096 values per example, see sample_plan),
  // so the fused sample holds the same z as Tanh's sample of BatchNorm's output.
  torch::manual_seed(8);
  bn::BatchNormAct fused(bn::BatchNormActOptions(16).activation("tanh"));
  randomize(fused);
  bn::BatchNorm2d norm(16);
  copy_state(fused, *norm);
  bn::Tanh act;
  auto p1 = make_activation_probe();
  auto p2 = make_activation_probe();
  fused->set_probe(p1);
  act->set_probe(p2);
  auto x = make_input({8, 16, 16, 16}, torch::kFloat);
  fused->forward(x);
  act->forward(norm->forward(x));
  ASSERT_EQ(p1->stats[bn::activation_stat::kSampleCount].item<double>(), 3641.0);
  ASSERT_EQ(p2->stats[bn::activation_stat::kSampleCount].item<double>(), 3641.0);
  EXPECT_TRUE(assert_close(p1->sample.narrow(0, 0, 3641), p2->sample.narrow(0, 0, 3641), {1e-5, 1e-5}));
}

TEST(BatchNormAct, HasBatchNormsStateNamesAndLoadsItsStateDict) {
  bn::BatchNormAct fused(bn::BatchNormActOptions(4).activation("relu"));
  bn::BatchNorm2d norm(4);
  std::vector<std::string> pf, pn, bf, bnames;
  for (const auto& p : fused->named_parameters()) pf.push_back(p.key());
  for (const auto& p : norm->named_parameters()) pn.push_back(p.key());
  for (const auto& b : fused->named_buffers()) bf.push_back(b.key());
  for (const auto& b : norm->named_buffers()) bnames.push_back(b.key());
  EXPECT_EQ(pf, pn);
  EXPECT_EQ(bf, bnames);
  EXPECT_TRUE(fused->weight.eq(1).all().item<bool>());
  EXPECT_EQ(fused->num_batches_tracked.scalar_type(), torch::kLong);

  randomize(fused);
  fused->forward(torch::randn({6, 4, 3, 3}));
  const auto path = (bnlab_test::scratch_dir("batch_norm_act") / "state.pt").string();
  torch::save(fused, path);
  torch::load(norm, path);  // a BatchNorm2d reads the fused module's state
  EXPECT_TRUE(torch::equal(norm->running_var, fused->running_var));
  EXPECT_TRUE(torch::equal(norm->weight, fused->weight));
  EXPECT_EQ(norm->num_batches_tracked.item<int64_t>(), 1);
  bn::BatchNormAct back(bn::BatchNormActOptions(4).activation("relu"));
  torch::load(back, path);
  EXPECT_TRUE(torch::equal(back->running_mean, fused->running_mean));
  std::filesystem::remove(path);
}

TEST(BatchNormAct, PrettyPrintCloneAndDtype) {
  bn::BatchNormAct m(bn::BatchNormActOptions(8).activation("gelu").momentum(c10::nullopt));
  std::ostringstream s;
  s << *m;
  EXPECT_EQ(s.str(),
            "bnlab::nn::BatchNormAct(8, activation=gelu, eps=1e-05, momentum=None, affine=true, "
            "track_running_stats=true)");
  auto copy = std::dynamic_pointer_cast<bn::BatchNormActImpl>(m->clone());
  ASSERT_NE(copy, nullptr);
  copy->forward(torch::randn({4, 8}));
  EXPECT_EQ(m->num_batches_tracked.item<int64_t>(), 0) << "the clone has its own state";
  EXPECT_EQ(copy->num_batches_tracked.item<int64_t>(), 1);
  m->to(torch::kDouble);
  EXPECT_EQ(m->weight.scalar_type(), torch::kDouble);
  EXPECT_EQ(m->num_batches_tracked.scalar_type(), torch::kLong);
  EXPECT_EQ(m->activation_name(), "gelu");
}

TEST(BatchNormAct, CumulativeMomentumMatchesBatchNorm) {
  torch::manual_seed(9);
  bn::BatchNormAct fused(bn::BatchNormActOptions(3).momentum(c10::nullopt));
  bn::BatchNorm1d norm(bn::BatchNormOptions(3).momentum(c10::nullopt));
  for (int i = 0; i < 3; ++i) {
    auto x = make_input({5, 3}, torch::kFloat);
    fused->forward(x);
    norm->forward(x);
  }
  EXPECT_TRUE(assert_close(fused->running_mean, norm->running_mean));
  EXPECT_TRUE(assert_close(fused->running_var, norm->running_var));
}

TEST(BatchNormAct, BadInputsAreClearErrorsAndChangeNothing) {
  using bnlab_test::error_of;
  bn::BatchNormAct m(bn::BatchNormActOptions(4));
  EXPECT_THAT(error_of([&] { m->forward(torch::randn({2, 3})); }),
              ::testing::HasSubstr("BatchNormAct: expected input with 4 channels (dim 1, num_features), got 3"));
  EXPECT_THAT(error_of([&] { m->forward(torch::randn({4})); }),
              ::testing::HasSubstr("BatchNormAct: expected an input of shape (N, C, *) with at least 2 dims, got 1D"));
  EXPECT_THAT(error_of([&] { m->forward(torch::randn({1, 4})); }),
              ::testing::HasSubstr("Expected more than 1 value per channel when training"));
  EXPECT_THAT(error_of([&] { m->forward(torch::ones({2, 4}, torch::kLong)); }),
              ::testing::HasSubstr("expected a floating-point input, got Long"));
  EXPECT_EQ(m->num_batches_tracked.item<int64_t>(), 0) << "rejected inputs must not count as batches";
  EXPECT_TRUE(m->running_mean.eq(0).all().item<bool>());
  EXPECT_THAT(error_of([&] { bn::BatchNormAct(bn::BatchNormActOptions(4).activation("swish")); }),
              ::testing::HasSubstr("swish"));
  EXPECT_THAT(error_of([&] { bn::BatchNormAct(bn::BatchNormActOptions(0)); }),
              ::testing::HasSubstr("expected num_features > 0, got 0"));
}

TEST(BatchNormAct, RecorderSeesItAsAnActivationLayer) {
  torch::manual_seed(13);
  torch::nn::Sequential net(torch::nn::Linear(10, 16), bn::BatchNormAct(bn::BatchNormActOptions(16)),
                            torch::nn::Linear(16, 3));
  // Wide weights: tanh saturates.
  {
    torch::NoGradGuard no_grad;
    net->ptr(0)->named_parameters()["weight"].mul_(20);
  }
  auto mem = std::make_shared<bnlab::train::MemorySink>();
  bnlab::train::Recorder recorder(net, bnlab::train::RecorderOptions().histogram_every(0));
  recorder.add_sink(mem);
  torch::optim::SGD opt(net->parameters(), 0.0);  // the weights stay those of the recorded forward
  auto x = torch::randn({64, 10});
  auto t = torch::randint(0, 3, {64});
  recorder.begin_step(0);
  auto loss = torch::nn::functional::cross_entropy(net->forward(x), t);
  opt.zero_grad();
  loss.backward();
  opt.step();
  recorder.end_step(loss, 0.0, 64);
  recorder.close();
  ASSERT_EQ(mem->steps().size(), 1U);
  const auto steps = mem->steps();
  const auto& layers = steps[0].layers;
  const auto it = std::find_if(layers.begin(), layers.end(), [](const auto& l) { return l.type == "BatchNormAct"; });
  ASSERT_NE(it, layers.end());
  EXPECT_EQ(it->kind, bnlab::train::LayerKind::kActivation);
  // Saturation of tanh over z = BatchNorm(x): computed here from the module's own rule.
  torch::NoGradGuard no_grad;
  auto* layer = dynamic_cast<bn::BatchNormActImpl*>(net->ptr(1).get());
  ASSERT_NE(layer, nullptr);
  auto pre = net->ptr(0)->as<torch::nn::Linear>()->forward(x);
  const double expected = 100.0 * layer->saturated(pre).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(it->saturation_pct, expected, 1e-9);
}

}  // namespace
