// The Recorder's metrics against values computed independently in the test.
#include "bnlab/train/recorder.h"

#include "bnlab/nn/modules/activation.h"
#include "bnlab/nn/modules/batch_norm.h"
#include "bnlab/nn/modules/batch_norm_act.h"
#include "bnlab/optim/sgd.h"

#include "assert_close.h"
#include "errors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace {

namespace bn = bnlab::nn;
namespace bt = bnlab::train;

// A copy, so that a call on a temporary step (sink->steps().at(0)) is safe.
bt::LayerMetrics layer(const bt::StepMetrics& m, const std::string& name) {
  for (const auto& l : m.layers) {
    if (l.name == name) return l;
  }
  throw std::runtime_error("no layer " + name);
}

double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-12); }

// One recorded SGD step on the mean squared output for the batch `x` (the
// loop several tests share).
template <typename Net>
void recorded_step(bt::Recorder& recorder, Net& net, torch::optim::Optimizer& optimizer, int64_t step,
                   const torch::Tensor& x, double lr) {
  recorder.begin_step(step);
  auto loss = net->forward(x).pow(2).mean();
  optimizer.zero_grad();
  loss.backward();
  optimizer.step();
  recorder.end_step(loss, lr, x.size(0));
}

TEST(Recorder, DiscoversActivationsBatchNormsAndLayersWithParameters) {
  torch::nn::Sequential net(torch::nn::Embedding(27, 4), torch::nn::Flatten(),
                            torch::nn::Linear(12, 8), bn::BatchNorm1d(8), bn::Tanh(),
                            torch::nn::Linear(8, 6), bn::Maxout(2), torch::nn::Dropout(0.0));
  bt::Recorder recorder(net);
  const auto& layers = recorder.layers();
  std::vector<std::string> names;
  for (const auto& l : layers) names.push_back(l.name + "=" + l.type + "/" + bt::to_string(l.kind));
  EXPECT_EQ(names, (std::vector<std::string>{"net.0=Embedding/parameters", "net.2=Linear/parameters",
                                             "net.3=BatchNorm1d/batchnorm", "net.4=Tanh/activation",
                                             "net.5=Linear/parameters", "net.6=Maxout/activation"}));
  EXPECT_NE(net[4]->as<bn::Tanh>()->probe(), nullptr);
  recorder.close();
  EXPECT_EQ(net[4]->as<bn::Tanh>()->probe(), nullptr) << "close() detaches the probes";
}

// One step of Linear → Tanh → Linear with Adam; every metric recomputed here
// from the tensors with plain torch ops (native tanh, autograd).
TEST(Recorder, MetricsEqualIndependentComputation) {
  torch::manual_seed(1);
  torch::nn::Linear first(5, 7);
  torch::nn::Linear second(7, 3);
  {
    torch::NoGradGuard no_grad;
    first->weight.mul_(6);  // wide pre-activations: some saturation
    first->weight[2].fill_(40);  // unit 2 saturates on every example (dead)
  }
  torch::nn::Sequential net(first, bn::Tanh(), second);
  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(0.01));
  auto sink = std::make_shared<bt::MemorySink>();
  bt::Recorder recorder(net, bt::RecorderOptions().background_writer(false));
  recorder.add_sink(sink);

  auto x = torch::rand({16, 5}) + 0.5;  // positive: unit 2's pre-activation stays far out
  auto target = torch::randint(3, {16});
  // Independent forward/backward on copies of the parameters.
  auto w1 = first->weight.detach().clone().requires_grad_(true);
  auto b1 = first->bias.detach().clone();
  auto z = torch::addmm(b1, x, w1.t());
  z.retain_grad();
  auto y = torch::tanh(z);
  y.retain_grad();
  auto logits = torch::addmm(second->bias.detach(), y, second->weight.detach().t());
  auto ref_loss = torch::nn::functional::cross_entropy(logits, target);
  ref_loss.backward();
  auto before = std::vector<torch::Tensor>{};
  for (const auto& p : net->parameters()) before.push_back(p.detach().clone());

  recorder.begin_step(0);
  auto loss = torch::nn::functional::cross_entropy(net->forward(x), target);
  optimizer.zero_grad();
  loss.backward();
  optimizer.step();
  recorder.end_step(loss, 0.01, 16);
  recorder.flush();
  const auto m = sink->steps().at(0);

  EXPECT_NEAR(m.loss, ref_loss.item<double>(), 1e-6);
  const auto& act = layer(m, "net.1");
  auto sat = torch::tanh(z.detach()).abs() > 0.97;
  EXPECT_DOUBLE_EQ(act.saturation_pct, 100.0 * sat.sum().item<double>() / sat.numel());
  EXPECT_GT(act.saturation_pct, 0.0);
  EXPECT_DOUBLE_EQ(act.dead_pct, 100.0 * sat.all(0).sum().item<double>() / 7.0);
  EXPECT_GE(act.dead_pct, 100.0 / 7.0);
  EXPECT_LT(rel(act.input_mean, z.mean().item<double>()), 1e-5);
  EXPECT_LT(rel(act.input_std, z.std().item<double>()), 1e-5);
  EXPECT_LT(rel(act.output_std, y.std().item<double>()), 1e-5);
  auto q = torch::quantile(z.detach().to(torch::kDouble).reshape(-1),
                           torch::tensor({0.15, 0.5, 0.85}, torch::kDouble));
  EXPECT_NEAR(act.input_p15, q[0].item<double>(), 1e-5);
  EXPECT_NEAR(act.input_p50, q[1].item<double>(), 1e-5);
  EXPECT_NEAR(act.input_p85, q[2].item<double>(), 1e-5);
  EXPECT_LT(rel(act.grad_pass_through, (1 - y.detach().pow(2)).mean().item<double>()), 1e-5);
  EXPECT_LT(rel(act.grad_output_norm, y.grad().norm().item<double>()), 1e-5);
  EXPECT_LT(rel(act.grad_input_norm, z.grad().norm().item<double>()), 1e-5);

  // Parameters: norms, grad:data and the update Adam actually made.
  const auto& lin = layer(m, "net.0");
  const auto& w_after = first->weight.detach();
  EXPECT_LT(rel(lin.weight.norm, w_after.norm().item<double>()), 1e-6);
  EXPECT_LT(rel(lin.weight.grad_norm, w1.grad().norm().item<double>()), 1e-5);
  EXPECT_LT(rel(lin.weight.grad_to_data, (w1.grad().std() / w_after.std()).item<double>()), 1e-5);
  const double update = ((w_after - before[0]).std() / w_after.std()).item<double>();
  EXPECT_LT(rel(lin.weight.update_to_data, update), 1e-5);
  EXPECT_GT(lin.weight.update_to_data, 0.0);
  double total = 0;
  for (const auto& p : net->parameters()) total += p.grad().pow(2).sum().item<double>();
  EXPECT_LT(rel(m.grad_norm, std::sqrt(total)), 1e-6);
  EXPECT_EQ(m.lr, 0.01);
  EXPECT_GT(m.step_time_s, 0.0);
  // Forward order.
  EXPECT_EQ(layer(m, "net.0").forward_order, 0);
  EXPECT_EQ(layer(m, "net.1").forward_order, 1);
  EXPECT_EQ(layer(m, "net.2").forward_order, 2);
}

// The input percentiles at three sample sizes, against torch::quantile of the
// values the documented rule keeps: all of them when they fit, else every s-th
// value in memory order, s the smallest stride >= ceil(n / capacity) that
// shares no factor with the values per example (so every unit is reached).
TEST(Recorder, InputPercentilesOverTheConfiguredSample) {
  torch::manual_seed(5);
  const int64_t batch = 64, units = 50;  // n = 3200 values per step
  auto x = torch::randn({batch, 8});
  auto percentiles_with = [&](int64_t sample) {
    torch::manual_seed(6);
    torch::nn::Sequential net(torch::nn::Linear(8, units), bn::Tanh());
    auto sink = std::make_shared<bt::MemorySink>();
    bt::Recorder recorder(net, bt::RecorderOptions().percentile_sample(sample).background_writer(false));
    recorder.add_sink(sink);
    torch::optim::SGD optimizer(net->parameters(), 0.0);
    recorded_step(recorder, net, optimizer, 0, x, 0.0);
    recorder.close();
    const auto act = layer(sink->steps().at(0), "net.1");
    EXPECT_GT(act.saturation_pct + act.input_std, 0.0) << "the other metrics are recorded at any sample size";
    torch::NoGradGuard no_grad;
    const auto z = net->ptr(0)->as<torch::nn::Linear>()->forward(x).reshape(-1).to(torch::kDouble);
    return std::make_pair(act, z);
  };
  auto expect_quantiles_of = [](const bt::LayerMetrics& act, const torch::Tensor& values) {
    const auto q = torch::quantile(values, torch::tensor({0.15, 0.5, 0.85}, torch::kDouble));
    EXPECT_NEAR(act.input_p15, q[0].item<double>(), 1e-5);
    EXPECT_NEAR(act.input_p50, q[1].item<double>(), 1e-5);
    EXPECT_NEAR(act.input_p85, q[2].item<double>(), 1e-5);
  };
  {
    const auto [act, z] = percentiles_with(4096);  // the whole input fits: exact
    expect_quantiles_of(act, z);
  }
  {
    // 1000 places for 3200 values: ceil = 4, but 4, 5 and 6 share a factor
    // with the 50 values per example, so the stride is 7 (458 values).
    const auto [act, z] = percentiles_with(1000);
    std::vector<int64_t> kept;
    for (int64_t i = 0; i < z.numel(); i += 7) kept.push_back(i);
    ASSERT_EQ(kept.size(), 458U);
    const auto sampled = z.index_select(0, torch::tensor(kept));
    expect_quantiles_of(act, sampled);
    // Every unit (column) appears in the sample.
    EXPECT_EQ(std::get<0>(at::_unique(torch::tensor(kept).remainder(units))).numel(), units);
    // And the sample is not the whole input: its median differs from the input's.
    EXPECT_NE(act.input_p50, torch::quantile(z, 0.5).item<double>());
  }
  {
    const auto [act, z] = percentiles_with(0);  // no percentiles
    EXPECT_TRUE(std::isnan(act.input_p15));
    EXPECT_TRUE(std::isnan(act.input_p50));
    EXPECT_TRUE(std::isnan(act.input_p85));
    EXPECT_LT(rel(act.input_mean, z.mean().item<double>()), 1e-5);
  }
}

TEST(Recorder, NegativePercentileSampleIsAnError) {
  torch::nn::Sequential net(torch::nn::Linear(2, 2), bn::Tanh());
  EXPECT_THAT(bnlab_test::error_of([&] { bt::Recorder(net, bt::RecorderOptions().percentile_sample(-1)); }),
              ::testing::HasSubstr("expected percentile_sample >= 0 (0: no percentiles), got -1"));
}

TEST(Recorder, BatchNormDriftEqualsIndependentComputation) {
  torch::manual_seed(2);
  bn::BatchNorm1d norm(4);
  {
    torch::NoGradGuard no_grad;
    norm->running_mean.copy_(torch::tensor({0.5f, -1.0f, 2.0f, 0.0f}));
    norm->running_var.copy_(torch::tensor({1.0f, 4.0f, 0.5f, 2.0f}));
  }
  torch::nn::Sequential net(torch::nn::Linear(3, 4), norm);
  auto sink = std::make_shared<bt::MemorySink>();
  bt::Recorder recorder(net, bt::RecorderOptions().background_writer(false));
  recorder.add_sink(sink);
  auto x = torch::randn({32, 3}) * 2;
  auto h = net[0]->as<torch::nn::Linear>()->forward(x).detach();
  auto rm = norm->running_mean.clone();
  auto rv = norm->running_var.clone();
  recorder.begin_step(0);
  auto out = net->forward(x);
  auto loss = out.pow(2).mean();
  loss.backward();
  recorder.end_step(loss, 0.1, 32);
  recorder.flush();
  const auto l = layer(sink->steps().at(0), "net.1");
  auto mean = h.mean(0);
  auto var = h.var(0, /*unbiased=*/false);
  EXPECT_LT(rel(l.bn_batch_mean, mean.mean().item<double>()), 1e-5);
  EXPECT_LT(rel(l.bn_batch_var, var.mean().item<double>()), 1e-5);
  EXPECT_LT(rel(l.bn_running_mean, rm.mean().item<double>()), 1e-6);
  EXPECT_LT(rel(l.bn_running_var, rv.mean().item<double>()), 1e-6);
  EXPECT_LT(rel(l.bn_mean_drift, ((mean - rm).abs() / (rv + 1e-5).sqrt()).mean().item<double>()), 1e-5);
  EXPECT_LT(rel(l.bn_var_drift, (var / rv).log().abs().mean().item<double>()), 1e-5);
  auto gy = (2.0 / out.numel()) * out.detach();
  EXPECT_LT(rel(l.grad_output_norm, gy.norm().item<double>()), 1e-5);
  EXPECT_LT(rel(l.weight.norm, norm->weight.norm().item<double>()), 1e-6);
  EXPECT_LT(rel(l.weight.grad_norm, norm->weight.grad().norm().item<double>()), 1e-5);
}

// A fused BatchNormAct reports its BatchNorm part's drift as BatchNorm1d does,
// next to its activation metrics; in eval there are no batch statistics.
TEST(Recorder, BatchNormActDriftEqualsIndependentComputation) {
  torch::manual_seed(4);
  bn::BatchNormAct fused(bn::BatchNormActOptions(5).activation("tanh"));
  {
    torch::NoGradGuard no_grad;
    fused->running_mean.copy_(torch::tensor({0.5f, -1.0f, 2.0f, 0.0f, 0.25f}));
    fused->running_var.copy_(torch::tensor({1.0f, 4.0f, 0.5f, 2.0f, 3.0f}));
    fused->weight.copy_(torch::tensor({1.5f, 0.5f, 1.0f, 2.0f, 0.75f}));
  }
  torch::nn::Sequential net(torch::nn::Linear(3, 5), fused);
  auto sink = std::make_shared<bt::MemorySink>();
  bt::Recorder recorder(net, bt::RecorderOptions().background_writer(false));
  recorder.add_sink(sink);
  auto x = torch::randn({32, 3}) * 2;
  auto h = net[0]->as<torch::nn::Linear>()->forward(x).detach().to(torch::kDouble);
  auto rm = fused->running_mean.clone().to(torch::kDouble);
  auto rv = fused->running_var.clone().to(torch::kDouble);
  recorder.begin_step(0);
  auto loss = net->forward(x).pow(2).mean();
  loss.backward();
  recorder.end_step(loss, 0.1, 32);

  net->eval();
  auto rm_eval = fused->running_mean.clone().to(torch::kDouble);
  auto rv_eval = fused->running_var.clone().to(torch::kDouble);
  recorder.begin_step(1);
  auto eval_loss = net->forward(x).pow(2).mean();
  eval_loss.backward();
  recorder.end_step(eval_loss, 0.1, 32);
  recorder.flush();

  const auto l = layer(sink->steps().at(0), "net.1");
  EXPECT_EQ(l.kind, bt::LayerKind::kActivation);
  auto mean = h.mean(0);
  auto var = h.var(0, /*unbiased=*/false);
  EXPECT_LT(rel(l.bn_batch_mean, mean.mean().item<double>()), 1e-5);
  EXPECT_LT(rel(l.bn_batch_var, var.mean().item<double>()), 1e-5);
  EXPECT_LT(rel(l.bn_running_mean, rm.mean().item<double>()), 1e-6);
  EXPECT_LT(rel(l.bn_running_var, rv.mean().item<double>()), 1e-6);
  EXPECT_LT(rel(l.bn_mean_drift, ((mean - rm).abs() / (rv + 1e-5).sqrt()).mean().item<double>()), 1e-5);
  EXPECT_LT(rel(l.bn_var_drift, (var / rv).log().abs().mean().item<double>()), 1e-5);
  // The activation metrics stay: z = BN(h) with the batch statistics, y = tanh(z).
  auto z = (h - mean) / (var + 1e-5).sqrt() * fused->weight.detach().to(torch::kDouble);
  EXPECT_LT(rel(l.input_std, z.flatten().std().item<double>()), 1e-5);
  EXPECT_LT(rel(l.output_mean, z.tanh().mean().item<double>()), 1e-5);

  const auto e = layer(sink->steps().at(1), "net.1");
  EXPECT_TRUE(std::isnan(e.bn_batch_mean));
  EXPECT_TRUE(std::isnan(e.bn_mean_drift));
  EXPECT_LT(rel(e.bn_running_mean, rm_eval.mean().item<double>()), 1e-6);
  EXPECT_LT(rel(e.bn_running_var, rv_eval.mean().item<double>()), 1e-6);
}

// NaN injected at layer k is reported at layer k: the first in forward order.
TEST(Recorder, NonFiniteValuesAreReportedAtTheFirstLayerInForwardOrder) {
  for (int k : {0, 2, 4}) {
    torch::manual_seed(3);
    torch::nn::Sequential net(torch::nn::Linear(4, 6), bn::Tanh(), torch::nn::Linear(6, 6), bn::Tanh(),
                              torch::nn::Linear(6, 2));
    {
      torch::NoGradGuard no_grad;
      net[static_cast<size_t>(k)]->as<torch::nn::Linear>()->weight[0][0] = std::nan("");
    }
    bt::Recorder recorder(net, bt::RecorderOptions().background_writer(false).alerts(
                                   bt::AlertOptions().log(false)));
    recorder.begin_step(0);
    auto loss = net->forward(torch::randn({8, 4})).pow(2).mean();
    loss.backward();
    recorder.end_step(loss, 0.1, 8);
    recorder.flush();
    auto alerts = recorder.alerts();
    ASSERT_EQ(alerts.size(), 1U) << "k=" << k;
    EXPECT_EQ(alerts[0].kind, "nonfinite");
    EXPECT_EQ(alerts[0].layer, "net." + std::to_string(k));
    EXPECT_THAT(alerts[0].message, ::testing::HasSubstr("first in forward order at layer net." + std::to_string(k)));
  }
}

TEST(Recorder, NaNFromTheBackwardPassIsReportedWhereItStarts) {
  // Finite forward; an Inf gradient enters between net.2 and net.3 (a hook),
  // so net.3 and later have finite gradients and net.2 and earlier do not.
  torch::nn::Sequential net(torch::nn::Linear(4, 6), bn::Tanh(), torch::nn::Linear(6, 6), bn::Tanh(),
                            torch::nn::Linear(6, 2));
  bt::Recorder recorder(net, bt::RecorderOptions().background_writer(false).alerts(bt::AlertOptions().log(false)));
  recorder.begin_step(0);
  auto x = torch::randn({8, 4});
  auto h = net[0]->as<torch::nn::Linear>()->forward(x);
  h = net[1]->as<bn::Tanh>()->forward(h);
  h = net[2]->as<torch::nn::Linear>()->forward(h);
  h.register_hook([](torch::Tensor g) { return g * std::numeric_limits<float>::infinity(); });
  h = net[3]->as<bn::Tanh>()->forward(h);
  auto loss = net[4]->as<torch::nn::Linear>()->forward(h).pow(2).mean();
  loss.backward();
  recorder.end_step(loss, 0.1, 8);
  recorder.flush();
  auto alerts = recorder.alerts();
  ASSERT_EQ(alerts.size(), 1U);
  EXPECT_EQ(alerts[0].layer, "net.2");
  EXPECT_THAT(alerts[0].message, ::testing::HasSubstr("the forward pass is finite"));
}

TEST(Recorder, NaNEnteringAnActivationIsReportedThere) {
  // net.2 (no parameters, so not a layer) writes NaN into one column; the Tanh
  // at net.3 is the first layer whose values turn non-finite. (index_fill's
  // backward zeroes that column's gradient, so nothing upstream is affected.)
  torch::nn::Sequential net(torch::nn::Linear(4, 6), bn::Tanh(), torch::nn::Functional([](torch::Tensor x) {
                              return x.index_fill(1, torch::tensor({0}), std::nan(""));
                            }),
                            bn::Tanh(), torch::nn::Linear(6, 2));
  bt::Recorder recorder(net, bt::RecorderOptions().background_writer(false).alerts(bt::AlertOptions().log(false)));
  recorder.begin_step(0);
  auto loss = net->forward(torch::randn({8, 4})).pow(2).mean();
  loss.backward();
  recorder.end_step(loss, 0.1, 8);
  recorder.flush();
  auto alerts = recorder.alerts();
  ASSERT_EQ(alerts.size(), 1U);
  EXPECT_EQ(alerts[0].layer, "net.3");
  EXPECT_THAT(alerts[0].message, ::testing::HasSubstr("non-finite loss (nan)"));
}

TEST(Recorder, SaturationAndUpdateAlertsAfterPatience) {
  torch::manual_seed(4);
  torch::nn::Sequential net(torch::nn::Linear(10, 20), bn::Tanh(), torch::nn::Linear(20, 2));
  {
    torch::NoGradGuard no_grad;
    net[0]->as<torch::nn::Linear>()->weight.mul_(30);
  }
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(1e-7));
  bt::Recorder recorder(net, bt::RecorderOptions().background_writer(false).alerts(
                                 bt::AlertOptions().patience(3).log(false)));
  for (int step = 0; step < 5; ++step) {
    recorded_step(recorder, net, optimizer, step, torch::randn({32, 10}), 1e-7);
  }
  recorder.flush();
  std::map<std::string, int64_t> first_step;
  for (const auto& a : recorder.alerts()) first_step.emplace(a.kind + ":" + a.layer, a.step);
  ASSERT_TRUE(first_step.count("saturation:net.1")) << "saturated tanh must be reported";
  EXPECT_EQ(first_step["saturation:net.1"], 2) << "after 3 steps (patience)";
  ASSERT_TRUE(first_step.count("update_to_data:net.0")) << "a tiny learning rate must be reported";
  EXPECT_EQ(recorder.alerts().size(), first_step.size()) << "each alert once per episode";
}

TEST(Recorder, HistogramsEveryNSteps) {
  torch::manual_seed(5);
  torch::nn::Sequential net(torch::nn::Linear(4, 8), bn::Tanh(), torch::nn::Linear(8, 1));
  auto sink = std::make_shared<bt::MemorySink>();
  bt::Recorder recorder(net, bt::RecorderOptions().histogram_every(2).histogram_bins(10).background_writer(false));
  recorder.add_sink(sink);
  auto x = torch::randn({64, 4});
  for (int step = 0; step < 3; ++step) {
    recorder.begin_step(step);
    auto loss = net->forward(x).pow(2).mean();
    loss.backward();
    recorder.end_step(loss, 0.1, 64);
  }
  recorder.flush();
  auto steps = sink->steps();
  EXPECT_EQ(steps[0].histograms.size(), 4U);  // input, output, grad_output, grad_input of the Tanh
  EXPECT_TRUE(steps[1].histograms.empty());
  EXPECT_EQ(steps[2].histograms.size(), 4U);
  for (const auto& h : steps[0].histograms) {
    double total = 0;
    for (double c : h.counts) total += c;
    EXPECT_EQ(total, h.num) << h.quantity;
    EXPECT_EQ(h.counts.size(), 10U);
    if (h.quantity == "output") {
      EXPECT_EQ(h.edges.front(), -1.0);  // tanh's fixed range
      EXPECT_EQ(h.edges.back(), 1.0);
    }
  }
  // The tanh input histogram equals torch.histc of the pre-activations.
  auto z = net[0]->as<torch::nn::Linear>()->forward(x).detach().to(torch::kDouble);
  const auto& in = steps[2].histograms[0];
  ASSERT_EQ(in.quantity, "input");
  auto expected = torch::histc(z, 10, in.edges.front(), in.edges.back());
  EXPECT_TRUE(torch::equal(torch::tensor(in.counts, torch::kDouble), expected));
}

TEST(Recorder, BackgroundWriterGivesTheSameMetrics) {
  auto run = [](bool background) {
    torch::manual_seed(6);
    torch::nn::Sequential net(torch::nn::Linear(4, 8), bn::BatchNorm1d(8), bn::ReLU(), torch::nn::Linear(8, 1));
    torch::optim::SGD optimizer(net->parameters(), 0.05);
    auto sink = std::make_shared<bt::MemorySink>();
    bt::Recorder recorder(net, bt::RecorderOptions().background_writer(background));
    recorder.add_sink(sink);
    for (int step = 0; step < 20; ++step) {
      recorded_step(recorder, net, optimizer, step, torch::randn({16, 4}), 0.05);
    }
    recorder.close();
    return sink->steps();
  };
  auto a = run(true);
  auto b = run(false);
  ASSERT_EQ(a.size(), 20U);
  ASSERT_EQ(b.size(), 20U);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].loss, b[i].loss);
    for (size_t j = 0; j < a[i].layers.size(); ++j) {
      EXPECT_EQ(a[i].layers[j].name, b[i].layers[j].name);
      const auto& cols = bt::layer_metric_columns();
      for (const auto& c : cols) {
        const double u = c.get(a[i].layers[j]);
        const double v = c.get(b[i].layers[j]);
        EXPECT_TRUE((std::isnan(u) && std::isnan(v)) || u == v) << c.name;
      }
    }
  }
}

TEST(Recorder, LayersStayInForwardOrderOnEveryStep) {
  // Registration order differs from forward order here: the forward runs the
  // children in reverse-pair order through a custom module.
  struct Net : torch::nn::Module {
    Net() {
      act = register_module("act", bn::Tanh());
      norm = register_module("norm", bn::BatchNorm1d(6));
      head = register_module("head", torch::nn::Linear(6, 2));
      stem = register_module("stem", torch::nn::Linear(3, 6));
    }
    torch::Tensor forward(const torch::Tensor& x) { return head(act(norm(stem(x)))); }
    bn::Tanh act{nullptr};
    bn::BatchNorm1d norm{nullptr};
    torch::nn::Linear head{nullptr}, stem{nullptr};
  };
  auto net = std::make_shared<Net>();
  torch::optim::SGD optimizer(net->parameters(), 0.1);
  auto sink = std::make_shared<bt::MemorySink>();
  bt::Recorder recorder(net, bt::RecorderOptions().background_writer(false));
  recorder.add_sink(sink);
  for (int step = 0; step < 4; ++step) {
    recorded_step(recorder, net, optimizer, step, torch::randn({8, 3}), 0.1);
  }
  for (const auto& m : sink->steps()) {
    std::vector<std::string> names;
    for (const auto& l : m.layers) names.push_back(l.name);
    EXPECT_EQ(names, (std::vector<std::string>{"net.stem", "net.norm", "net.act", "net.head"})) << "step " << m.step;
    for (size_t i = 0; i < m.layers.size(); ++i) EXPECT_EQ(m.layers[i].forward_order, static_cast<int64_t>(i));
  }
}

TEST(Recorder, KeepsNoGradientAliveAfterEndStep) {
  // Once the user releases the gradients (zero_grad(set_to_none)), nothing of
  // the last step may hold them: the next backward should reuse their memory.
  torch::nn::Sequential net(torch::nn::Linear(4, 8), bn::BatchNorm1d(8), bn::Tanh(), torch::nn::Linear(8, 1));
  torch::optim::SGD optimizer(net->parameters(), 0.1);
  bt::Recorder recorder(net, bt::RecorderOptions().background_writer(false));
  recorded_step(recorder, net, optimizer, 0, torch::randn({16, 4}), 0.1);
  std::vector<c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>> grads;
  for (const auto& p : net->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    grads.emplace_back(p.grad().getIntrusivePtr());
  }
  for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
  for (const auto& g : grads) EXPECT_TRUE(g.expired());
}

// With a bnlab fused optimizer reporting, the parameter metrics come from the
// optimizer's pass; they must equal the recorder's own on a twin without it.
TEST(Recorder, OptimizerReportedParameterMetricsEqualTheRecordersOwn) {
  auto make_net = [] {
    torch::manual_seed(3);
    return torch::nn::Sequential(torch::nn::Linear(6, 40), bn::Tanh(), torch::nn::Linear(40, 3));
  };
  auto reported_net = make_net(), measured_net = make_net();
  const auto options = torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(1e-3);
  bnlab::optim::SGD reporting(reported_net->parameters(), options), silent(measured_net->parameters(), options);
  auto reported_sink = std::make_shared<bt::MemorySink>(), measured_sink = std::make_shared<bt::MemorySink>();
  bt::Recorder reported(reported_net, bt::RecorderOptions().background_writer(false));
  bt::Recorder measured(measured_net, bt::RecorderOptions().background_writer(false));
  reported.add_sink(reported_sink);
  measured.add_sink(measured_sink);
  reported.take_update_statistics_from(reporting);
  for (int step = 0; step < 3; ++step) {
    auto x = torch::randn({16, 6});
    recorded_step(reported, reported_net, reporting, step, x, 0.05);
    recorded_step(measured, measured_net, silent, step, x, 0.05);
  }
  reported.flush();
  measured.flush();
  const auto reported_steps = reported_sink->steps(), measured_steps = measured_sink->steps();
  for (int step = 0; step < 3; ++step) {
    for (const char* name : {"net.0", "net.2"}) {
      SCOPED_TRACE(std::string(name) + ", step " + std::to_string(step));
      const auto& a = layer(reported_steps.at(step), name);
      const auto& b = layer(measured_steps.at(step), name);
      for (const auto* pair : {&a.weight, &a.bias}) {
        const auto& theirs = pair == &a.weight ? b.weight : b.bias;
        EXPECT_LT(rel(pair->norm, theirs.norm), 1e-6);
        EXPECT_LT(rel(pair->grad_norm, theirs.grad_norm), 1e-6);
        EXPECT_LT(rel(pair->grad_to_data, theirs.grad_to_data), 1e-5);
        EXPECT_LT(rel(pair->update_to_data, theirs.update_to_data), 1e-5);
        EXPECT_GT(pair->update_to_data, 0.0);
      }
    }
  }
}

// Parameters the optimizer does not report are measured by the recorder: one
// outside the optimizer (never changes: update 0), and one whose gradient is
// dropped for a step (its Δθ is then unknown: the recorder's copy of θ is as
// old as the last step the optimizer reported).
TEST(Recorder, ParametersTheOptimizerDoesNotReportAreMeasuredByTheRecorder) {
  torch::manual_seed(4);
  torch::nn::Linear first(5, 7), second(7, 2);
  torch::nn::Sequential net(first, bn::Tanh(), second);
  bnlab::optim::SGD sgd(first->parameters(), torch::optim::SGDOptions(0.1));
  auto sink = std::make_shared<bt::MemorySink>();
  bt::Recorder recorder(net, bt::RecorderOptions().background_writer(false));
  recorder.add_sink(sink);
  recorder.take_update_statistics_from(sgd);
  for (int step = 0; step < 3; ++step) {
    recorder.begin_step(step);
    auto loss = net->forward(torch::randn({8, 5})).pow(2).mean();
    for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
    loss.backward();
    if (step == 1) first->weight.mutable_grad() = torch::Tensor();  // the optimizer skips it
    sgd.step();
    recorder.end_step(loss, 0.1, 8);
  }
  recorder.flush();
  const auto& steps = sink->steps();
  EXPECT_GT(layer(steps.at(0), "net.0").weight.update_to_data, 0.0);
  EXPECT_TRUE(std::isnan(layer(steps.at(1), "net.0").weight.update_to_data)) << "not measured";
  EXPECT_GT(layer(steps.at(1), "net.0").bias.update_to_data, 0.0) << "still reported";
  EXPECT_GT(layer(steps.at(2), "net.0").weight.update_to_data, 0.0);
  for (int step = 0; step < 3; ++step) {
    EXPECT_EQ(layer(steps.at(step), "net.2").weight.update_to_data, 0.0) << step;
    EXPECT_GT(layer(steps.at(step), "net.2").weight.norm, 0.0) << step;
  }
}

TEST(Recorder, SinkFailureIsReportedNotSwallowed) {
  struct FailingSink : bt::MetricsSink {
    void write(const bt::StepMetrics&) override { throw std::runtime_error("disk full"); }
  };
  torch::nn::Sequential net(torch::nn::Linear(2, 2), bn::Tanh());
  bt::Recorder recorder(net);
  recorder.add_sink(std::make_shared<FailingSink>());
  recorder.begin_step(0);
  auto loss = net->forward(torch::randn({4, 2})).sum();
  loss.backward();
  recorder.end_step(loss, 0.1, 4);
  try {
    recorder.flush();
    FAIL() << "flush() must rethrow the sink's error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("writing metrics failed: disk full"));
  }
}

TEST(Recorder, LossIsTheValueAtEndStepWhateverItsType) {
  // Host float and double scalars are read at end_step, other losses handed
  // to the writer: each step records the value the loss had at end_step,
  // even when the caller then reuses the tensor in place.
  torch::nn::Sequential net(torch::nn::Linear(2, 2));
  auto sink = std::make_shared<bt::MemorySink>();
  bt::Recorder recorder(net, bt::RecorderOptions().background_writer(true));
  recorder.add_sink(sink);
  const std::vector<std::pair<torch::Tensor, double>> losses = {
      {torch::tensor(1.25f), 1.25},
      {torch::tensor(2.5, torch::kDouble), 2.5},
      {torch::tensor(3.0).to(torch::kBFloat16), 3.0},  // exactly representable
      {torch::tensor({4.5f}), 4.5},                      // one element, not 0-d
  };
  for (size_t i = 0; i < losses.size(); ++i) {
    recorder.begin_step(static_cast<int64_t>(i));
    recorder.end_step(losses[i].first, 0.1, 1);
    losses[i].first.fill_(-1.0);
  }
  // A loss of several elements is an error that leaves the step open.
  recorder.begin_step(4);
  EXPECT_THAT(bnlab_test::error_of([&] { recorder.end_step(torch::ones({2}), 0.1, 1); }),
              ::testing::HasSubstr("end_step: expected the step's loss as a tensor of one element, got shape [2]"));
  recorder.end_step(torch::tensor(5.0f), 0.1, 1);
  recorder.flush();
  const auto steps = sink->steps();
  ASSERT_EQ(steps.size(), losses.size() + 1);
  for (size_t i = 0; i < losses.size(); ++i) EXPECT_EQ(steps[i].loss, losses[i].second) << "step " << i;
  EXPECT_EQ(steps.back().loss, 5.0);
  recorder.close();
}

TEST(Recorder, EndStepWithoutBeginIsAnError) {
  torch::nn::Sequential net(torch::nn::Linear(2, 2));
  bt::Recorder recorder(net);
  EXPECT_ANY_THROW(recorder.end_step(torch::tensor(1.0), 0.1, 1));
}

}  // namespace
