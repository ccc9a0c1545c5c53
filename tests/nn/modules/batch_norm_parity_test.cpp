// bnlab::nn::BatchNorm{1,2,3}d against real PyTorch: the reference data is
// produced during the test run by tests/reference/batch_norm_reference.py.
#include "bnlab/nn/modules/batch_norm.h"

#include "assert_close.h"
#include "reference_data.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

namespace {

using bnlab_test::assert_close;
using bnlab_test::assert_close_to_pytorch;
using bnlab_test::ErrorStats;
using bnlab_test::ReferenceData;
using nlohmann::json;

const ReferenceData& reference() {
  static const ReferenceData data =
      ReferenceData::load(bnlab_test::reference_dir(), "batch_norm");
  return data;
}

// Builds the module a case describes, with its initial state.
std::shared_ptr<torch::nn::Module> make_module(const json& c, const ReferenceData& ref,
                                               std::function<torch::Tensor(const torch::Tensor&)>* forward) {
  bnlab::nn::BatchNormOptions opts(c.at("num_features").get<int64_t>());
  opts.eps(c.at("eps").get<double>())
      .affine(c.at("affine").get<bool>())
      .track_running_stats(c.at("track_running_stats").get<bool>());
  opts.momentum(c.at("momentum").is_null() ? c10::optional<double>()
                                           : c10::optional<double>(c.at("momentum").get<double>()));
  std::shared_ptr<torch::nn::Module> module;
  switch (c.at("dim").get<int>()) {
    case 1: {
      auto m = bnlab::nn::BatchNorm1d(opts);
      *forward = [m](const torch::Tensor& x) mutable { return m->forward(x); };
      module = m.ptr();
      break;
    }
    case 2: {
      auto m = bnlab::nn::BatchNorm2d(opts);
      *forward = [m](const torch::Tensor& x) mutable { return m->forward(x); };
      module = m.ptr();
      break;
    }
    default: {
      auto m = bnlab::nn::BatchNorm3d(opts);
      *forward = [m](const torch::Tensor& x) mutable { return m->forward(x); };
      module = m.ptr();
    }
  }
  module->to(bnlab_test::dtype_from_name(c.at("dtype").get<std::string>()));
  torch::NoGradGuard no_grad;
  auto params = module->named_parameters();  // the dicts own the handles find() points into
  auto buffers = module->named_buffers();
  for (const auto& [key, desc] : c.at("init").items()) {
    auto* slot = params.find(key);
    if (slot == nullptr) slot = buffers.find(key);
    EXPECT_NE(slot, nullptr) << key;
    if (slot != nullptr) slot->copy_(ref.tensor(desc));
  }
  return module;
}

// PyTorch's float64 evaluation of a float32 step's value (undefined for float64 cases).
torch::Tensor exact(const ReferenceData& ref, const json& step, const std::string& key) {
  if (!step.contains("exact") || !step.at("exact").contains(key)) return {};
  return ref.tensor(step.at("exact").at(key));
}

torch::Tensor or_zeros(const torch::Tensor& g, const torch::Tensor& like) {
  return g.defined() ? g : torch::zeros_like(like);
}

struct Group {
  int dim;
  std::string dtype;
};

void PrintTo(const Group& g, std::ostream* os) { *os << "BatchNorm" << g.dim << "d " << g.dtype; }

class BatchNormParity : public ::testing::TestWithParam<Group> {};

TEST_P(BatchNormParity, OutputsGradientsDoubleBackwardAndRunningStatsMatchPyTorch) {
  const auto& ref = reference();
  const auto tol = bnlab_test::default_tolerance(bnlab_test::dtype_from_name(GetParam().dtype));
  ErrorStats stats;
  int cases = 0;
  for (const auto& c : ref.meta().at("cases")) {
    if (c.at("dim").get<int>() != GetParam().dim || c.at("dtype") != GetParam().dtype) continue;
    ++cases;
    const std::string name = c.at("name").get<std::string>();
    SCOPED_TRACE(name);
    std::function<torch::Tensor(const torch::Tensor&)> forward;
    auto module = make_module(c, ref, &forward);
    const auto layout = c.at("layout").get<std::string>();
    const bool affine = c.at("affine").get<bool>();
    int step_index = 0;
    for (const auto& step : c.at("steps")) {
      const std::string where = name + " step " + std::to_string(step_index++);
      module->train(step.at("mode") == "train");
      auto x = bnlab_test::with_layout(ref.tensor(step.at("x")), layout).requires_grad_(true);
      auto gy = bnlab_test::with_layout(ref.tensor(step.at("grad_y")), layout).requires_grad_(true);
      auto y = forward(x);
      EXPECT_TRUE(assert_close_to_pytorch(y, ref.tensor(step.at("y")), exact(ref, step, "y"), tol,
                                          &stats, where + " y"));
      if (step.at("y_channels_last").get<bool>()) {
        EXPECT_TRUE(y.is_contiguous(y.dim() == 4 ? torch::MemoryFormat::ChannelsLast
                                                 : torch::MemoryFormat::ChannelsLast3d))
            << where << ": output should keep the channels_last layout";
      }
      torch::autograd::variable_list params{x};
      if (affine) {
        params.push_back(module->named_parameters()["weight"]);
        params.push_back(module->named_parameters()["bias"]);
      }
      // First derivatives twice: the ordinary backward (the fast path), then
      // with create_graph (the differentiable path the second derivatives use).
      auto plain = torch::autograd::grad({y}, params, {gy}, /*retain_graph=*/true,
                                         /*create_graph=*/false, /*allow_unused=*/true);
      auto first = torch::autograd::grad({y}, params, {gy}, /*retain_graph=*/true,
                                         /*create_graph=*/true, /*allow_unused=*/true);
      const std::vector<std::string> first_names{"grad_x", "grad_weight", "grad_bias"};
      for (size_t i = 0; i < params.size(); ++i) {
        auto expected = ref.tensor(step.at(first_names[i]));
        auto exact_value = exact(ref, step, first_names[i]);
        EXPECT_TRUE(assert_close_to_pytorch(or_zeros(plain[i], params[i]), expected, exact_value,
                                            tol, &stats, where + " " + first_names[i]));
        EXPECT_TRUE(assert_close_to_pytorch(or_zeros(first[i], params[i]), expected, exact_value,
                                            tol, &stats,
                                            where + " " + first_names[i] + " (create_graph)"));
      }
      auto s = (or_zeros(first[0], x) * ref.tensor(step.at("v_x"))).sum();
      if (affine) {
        s = s + (first[1] * ref.tensor(step.at("v_weight"))).sum() +
            (first[2] * ref.tensor(step.at("v_bias"))).sum();
      }
      // The second-order reference is PyTorch's float64 evaluation of this
      // step (see batch_norm_reference.py for why), held to the same tolerance.
      torch::autograd::variable_list second_wrt{x, gy};
      if (affine) second_wrt.push_back(params[1]);
      auto second = torch::autograd::grad({s}, second_wrt, {}, /*retain_graph=*/false,
                                          /*create_graph=*/false, /*allow_unused=*/true);
      EXPECT_TRUE(assert_close(or_zeros(second[0], x), ref.tensor(step.at("grad2_x")), tol,
                               &stats, where + " grad2_x"));
      EXPECT_TRUE(assert_close(or_zeros(second[1], gy), ref.tensor(step.at("grad2_grad_y")), tol,
                               &stats, where + " grad2_grad_y"));
      if (affine) {
        EXPECT_TRUE(assert_close(or_zeros(second[2], params[1]),
                                 ref.tensor(step.at("grad2_weight")), tol, &stats,
                                 where + " grad2_weight"));
      }
      if (c.at("track_running_stats").get<bool>()) {
        auto buffers = module->named_buffers();
        EXPECT_TRUE(assert_close_to_pytorch(buffers["running_mean"],
                                            ref.tensor(step.at("running_mean")),
                                            exact(ref, step, "running_mean"), tol, &stats,
                                            where + " running_mean"));
        EXPECT_TRUE(assert_close_to_pytorch(buffers["running_var"],
                                            ref.tensor(step.at("running_var")),
                                            exact(ref, step, "running_var"), tol, &stats,
                                            where + " running_var"));
        EXPECT_EQ(buffers["num_batches_tracked"].scalar_type(), torch::kLong);
        EXPECT_EQ(buffers["num_batches_tracked"].item<int64_t>(),
                  step.at("num_batches_tracked").get<int64_t>())
            << where;
      }
    }
  }
  EXPECT_GT(cases, 0) << "no reference cases for this group";
  // The worst error, for the record (≤ 1 means within tolerance).
  spdlog::info("BatchNorm{}d {} parity: {} cases (torch {}), worst |diff| {:.3g}, worst "
               "|diff|/(atol+rtol|ref|) {:.3g} at {}; {} elements off PyTorch but closer to its "
               "float64 result",
               GetParam().dim, GetParam().dtype, cases,
               ref.meta().at("torch_version").get<std::string>(), stats.max_abs, stats.max_ratio,
               stats.where, stats.closer_than_pytorch);
}

INSTANTIATE_TEST_SUITE_P(Modules, BatchNormParity,
                         ::testing::Values(Group{1, "float32"}, Group{1, "float64"},
                                           Group{2, "float32"}, Group{2, "float64"},
                                           Group{3, "float32"}, Group{3, "float64"}),
                         [](const ::testing::TestParamInfo<Group>& info) {
                           return "BatchNorm" + std::to_string(info.param.dim) + "d_" +
                                  info.param.dtype;
                         });

}  // namespace
