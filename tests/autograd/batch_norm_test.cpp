// Finite-difference checks of BatchNormFunction's first and second derivatives.
#include "bnlab/autograd/batch_norm.h"

#include "gradcheck.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using bnlab::autograd::BatchNormFunction;
using bnlab_test::gradcheck;
using bnlab_test::gradgradcheck;
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

}  // namespace
