// Finite-difference checks of BatchNormFunction's first and second derivatives.
#include "bnlab/autograd/batch_norm.h"

#include "assert_close.h"
#include "gradcheck.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using bnlab::autograd::BatchNormFunction;
using bnlab_test::gradcheck;
using bnlab_test::gradgradcheck;
using bnlab_test::Tolerance;
using torch::autograd::variable_list;

struct GradcheckCase {
  std::vector<int64_t> shape;
  bool training;
  bool affine;
  bool channels_last;
};

void PrintTo(const GradcheckCase& c, std::ostream* os) {
  *os << "shape " << c10::IntArrayRef(c.shape) << (c.training ? " train" : " eval")
      << (c.affine ? " affine" : "") << (c.channels_last ? " channels_last" : "");
}

std::string case_name(const ::testing::TestParamInfo<GradcheckCase>& info) {
  std::string name = std::to_string(info.param.shape.size()) + "d";
  for (auto s : info.param.shape) name += "_" + std::to_string(s);
  name += info.param.training ? "_train" : "_eval";
  name += info.param.affine ? "_affine" : "_plain";
  if (info.param.channels_last) name += "_channels_last";
  return name;
}

class BatchNormGradcheck : public ::testing::TestWithParam<GradcheckCase> {
 protected:
  void SetUp() override { torch::manual_seed(7); }

  // x, weight, bias as float64 leaves (weight/bias undefined without affine).
  variable_list make_inputs() const {
    const auto& p = GetParam();
    auto x = torch::randn(p.shape, torch::kDouble) * 1.7 + 0.3;
    if (p.channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
    const int64_t c = p.shape[1];
    variable_list in{x.requires_grad_(true)};
    if (p.affine) {
      in.push_back((torch::rand({c}, torch::kDouble) + 0.5).requires_grad_(true));
      in.push_back(torch::randn({c}, torch::kDouble).requires_grad_(true));
    } else {
      in.push_back(torch::Tensor());
      in.push_back(torch::Tensor());
    }
    return in;
  }

  // A pure function of (x, weight, bias): fresh running statistics every call.
  bnlab_test::DifferentiableFn make_fn() const {
    const auto& p = GetParam();
    const int64_t c = p.shape[1];
    auto running_mean = torch::randn({c}, torch::kDouble) * 0.2;
    auto running_var = torch::rand({c}, torch::kDouble) + 0.5;
    const bool training = p.training;
    return [=](const variable_list& in) -> variable_list {
      auto opt = [](const torch::Tensor& t) {
        return t.defined() ? c10::optional<torch::Tensor>(t) : c10::nullopt;
      };
      auto y = BatchNormFunction::apply(in[0], opt(in[1]), opt(in[2]),
                                        c10::optional<torch::Tensor>(running_mean.clone()),
                                        c10::optional<torch::Tensor>(running_var.clone()),
                                        training, 0.1, 1e-3);
      return {y};
    };
  }
};

TEST_P(BatchNormGradcheck, FirstDerivativesMatchFiniteDifferences) {
  EXPECT_TRUE(gradcheck(make_fn(), make_inputs()));
}

TEST_P(BatchNormGradcheck, SecondDerivativesMatchFiniteDifferences) {
  EXPECT_TRUE(gradgradcheck(make_fn(), make_inputs()));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, BatchNormGradcheck,
    ::testing::Values(GradcheckCase{{5, 3}, true, true, false},
                      GradcheckCase{{5, 3}, false, true, false},
                      GradcheckCase{{4, 2, 3}, true, false, false},
                      GradcheckCase{{4, 2, 3}, false, false, false},
                      GradcheckCase{{2, 3, 2, 2}, true, true, false},
                      GradcheckCase{{2, 3, 2, 2}, true, true, true},
                      GradcheckCase{{2, 3, 2, 2}, false, true, true},
                      GradcheckCase{{2, 2, 2, 1, 2}, true, true, false},
                      GradcheckCase{{2, 2, 2, 1, 2}, false, false, false}),
    case_name);

// The trap: a differentiable backward that reused the forward's saved 1/σ
// would treat it as a constant and get the Hessian wrong. For L = <y, g> with
// g fixed, the Hessian H = ∂²L/∂x² is symmetric, so the double-backward product
// ∂<∇L, v>/∂x = H·v must equal the directional difference of ∇L along v.
TEST(BatchNormFunction, HessianVectorProductMatchesDifferenceOfGradients) {
  torch::manual_seed(3);
  auto x0 = torch::randn({6, 2}, torch::kDouble);
  auto g = torch::randn({6, 2}, torch::kDouble);
  auto v = torch::randn({6, 2}, torch::kDouble);
  auto grad_x = [&](const torch::Tensor& x_in, bool create_graph) {
    auto x = create_graph ? x_in : x_in.detach().requires_grad_(true);
    auto y = BatchNormFunction::apply(x, c10::nullopt, c10::nullopt, c10::nullopt, c10::nullopt,
                                      true, 0.1, 1e-5);
    return torch::autograd::grad({y}, {x}, {g}, true, create_graph)[0];
  };
  auto x = x0.clone().requires_grad_(true);
  auto hvp = torch::autograd::grad({(grad_x(x, true) * v).sum()}, {x})[0];
  const double h = 1e-6;
  // Directional finite difference of ∂L/∂x along v, projected: H·v for symmetric H.
  auto fd = (grad_x(x0 + h * v, false) - grad_x(x0 - h * v, false)) / (2 * h);
  EXPECT_TRUE(torch::allclose(hvp, fd, 1e-5, 1e-6)) << "H·v " << hvp << "\nfinite diff " << fd;
}

TEST(BatchNormFunction, UndefinedGradOutputGivesZeroGradients) {
  auto x = torch::randn({4, 3}, torch::kDouble).requires_grad_(true);
  auto y = BatchNormFunction::apply(x, c10::nullopt, c10::nullopt, c10::nullopt, c10::nullopt,
                                    true, 0.1, 1e-5);
  // y·0 keeps the graph; the gradient must be exactly zero, not NaN.
  (y * 0).sum().backward();
  EXPECT_TRUE(x.grad().eq(0).all().item<bool>());
}

// Inputs large enough that the kernels split the rows over both threads and,
// in the channel-minor layouts ((N, C) and channels_last), into many row blocks
// (each block's sums are kept in the input's dtype, then added in double).
// Reference: the definitions, evaluated in float64 with plain torch ops on the
// same (rounded) inputs.
struct ManyBlocksCase {
  std::vector<int64_t> shape;
  bool channels_last;
  torch::ScalarType dtype;
};

void PrintTo(const ManyBlocksCase& c, std::ostream* os) {
  *os << "shape " << c10::IntArrayRef(c.shape) << (c.channels_last ? " channels_last " : " ")
      << c10::toString(c.dtype);
}

class BatchNormParityManyBlocks : public ::testing::TestWithParam<ManyBlocksCase> {};

TEST_P(BatchNormParityManyBlocks, ForwardBackwardAndRunningStatsMatchTheDefinitions) {
  const auto& p = GetParam();
  const int previous_threads = torch::get_num_threads();
  torch::set_num_threads(2);
  torch::manual_seed(11);
  const int64_t C = p.shape[1];
  auto layout = [&](torch::Tensor t) {
    if (!p.channels_last) return t.contiguous();
    return t.contiguous(t.dim() == 4 ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::ChannelsLast3d);
  };
  // Per-channel offsets and scales, so that a sum mixed up between channels shows.
  std::vector<int64_t> view(p.shape.size(), 1);
  view[1] = C;
  auto x = layout((torch::randn(p.shape, torch::kDouble) * (torch::rand({C}, torch::kDouble) + 0.5).view(view) +
                   torch::randn({C}, torch::kDouble).view(view) * 3)
                      .to(p.dtype));
  auto g = layout(torch::randn(p.shape, torch::kDouble).to(p.dtype) + 0.25);
  auto weight = (torch::rand({C}, torch::kDouble) + 0.5).to(p.dtype).requires_grad_(true);
  auto bias = torch::randn({C}, torch::kDouble).to(p.dtype).requires_grad_(true);
  auto running_mean = torch::randn({C}, torch::kDouble).to(p.dtype);
  auto running_var = (torch::rand({C}, torch::kDouble) + 0.5).to(p.dtype);
  const auto rm0 = running_mean.to(torch::kDouble).clone(), rv0 = running_var.to(torch::kDouble).clone();
  const double momentum = 0.1, eps = 1e-5;

  auto xs = x.detach().requires_grad_(true);
  auto y = BatchNormFunction::apply(xs, weight, bias, running_mean, running_var, true, momentum, eps);
  auto grads = torch::autograd::grad({y}, {xs, weight, bias}, {g});
  torch::set_num_threads(previous_threads);

  // y = γ·x̂ + β, x̂ = (x − μ)/√(σ² + ε); dβ = Σg, dγ = Σ g·x̂,
  // dx = γ/√(σ² + ε) · (g − Σg/M − x̂·Σ(g·x̂)/M); running var updated with σ²·M/(M − 1).
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < static_cast<int64_t>(p.shape.size()); ++d) dims.push_back(d);
  const double M = static_cast<double>(x.numel() / C);
  auto xd = x.to(torch::kDouble), gd = g.to(torch::kDouble);
  auto wd = weight.detach().to(torch::kDouble), bd = bias.detach().to(torch::kDouble);
  auto mean = xd.mean(dims);
  auto var = (xd - mean.view(view)).pow(2).mean(dims);
  auto invstd = (var + eps).rsqrt();
  auto xhat = (xd - mean.view(view)) * invstd.view(view);
  auto expected_y = xhat * wd.view(view) + bd.view(view);
  auto sum_g = gd.sum(dims), sum_gx = (gd * xhat).sum(dims);
  auto expected_dx = (wd * invstd).view(view) * (gd - (sum_g / M).view(view) - xhat * (sum_gx / M).view(view));

  const auto tol = bnlab_test::default_tolerance(p.dtype);
  auto as_dtype = [&](const torch::Tensor& t) { return t.to(p.dtype); };
  EXPECT_TRUE(bnlab_test::assert_close(y, as_dtype(expected_y), tol)) << "y";
  EXPECT_TRUE(bnlab_test::assert_close(grads[0], as_dtype(expected_dx), tol)) << "dx";
  // Σ over M values: scale the tolerance with the sums' magnitude (Σ|term|), not the result's.
  const Tolerance sum_tol{tol.rtol, tol.atol * M};
  EXPECT_TRUE(bnlab_test::assert_close(grads[1], as_dtype(sum_gx), sum_tol)) << "dγ";
  EXPECT_TRUE(bnlab_test::assert_close(grads[2], as_dtype(sum_g), sum_tol)) << "dβ";
  EXPECT_TRUE(bnlab_test::assert_close(running_mean, as_dtype((1 - momentum) * rm0 + momentum * mean), tol))
      << "running_mean";
  EXPECT_TRUE(bnlab_test::assert_close(running_var,
                                       as_dtype((1 - momentum) * rv0 + momentum * var * M / (M - 1)), tol))
      << "running_var";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, BatchNormParityManyBlocks,
    ::testing::Values(ManyBlocksCase{{3000, 37}, false, torch::kFloat},   // (N, C): C not a multiple of the lanes
                      ManyBlocksCase{{3000, 37}, false, torch::kDouble},
                      ManyBlocksCase{{200, 1024}, false, torch::kFloat},  // wide rows: the minimum block of rows
                      ManyBlocksCase{{6, 24, 23, 29}, true, torch::kFloat},
                      ManyBlocksCase{{6, 24, 23, 29}, true, torch::kDouble},
                      ManyBlocksCase{{3, 5, 7, 11, 13}, true, torch::kFloat},
                      ManyBlocksCase{{4, 72, 9, 11}, true, torch::kFloat},  // rows of many vectors, every capability
                      ManyBlocksCase{{4, 72, 9, 11}, true, torch::kDouble},
                      // Rows of whole vectors with their sums in registers: 4 of float32 on
                      // AVX-512 (8 on AVX2), 8 of float64 on AVX-512, the most held there.
                      ManyBlocksCase{{4, 64, 5, 7}, true, torch::kFloat},
                      ManyBlocksCase{{4, 64, 5, 7}, true, torch::kDouble},
                      ManyBlocksCase{{2, 130, 4, 5}, true, torch::kFloat},  // just past the register rows
                      ManyBlocksCase{{6, 24, 23, 29}, false, torch::kFloat}),  // channel-major, for contrast
    [](const ::testing::TestParamInfo<ManyBlocksCase>& info) {
      std::string name = std::to_string(info.param.shape.size()) + "d";
      for (auto s : info.param.shape) name += "_" + std::to_string(s);
      if (info.param.channels_last) name += "_channels_last";
      return name + "_" + c10::toString(info.param.dtype);
    });

}  // namespace
