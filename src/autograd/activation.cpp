#include "bnlab/autograd/activation.h"

#include "autograd/activation_internal.h"
#include "bnlab/nn/probe.h"
#include "kernels/activation.h"

#include <ATen/ATen.h>

#include <cmath>

namespace bnlab::autograd {

namespace {

using torch::Tensor;
namespace slot = nn::activation_stat;

// Maximum of a unimodal function on [lo, hi] by golden-section search.
template <typename F>
double golden_section_max(F f, double lo, double hi) {
  const double ratio = (std::sqrt(5.0) - 1.0) / 2.0;
  double a = lo;
  double b = hi;
  for (int i = 0; i < 200 && b - a > 1e-12; ++i) {
    const double c = b - ratio * (b - a);
    const double d = a + ratio * (b - a);
    if (f(c) > f(d)) {
      b = d;
    } else {
      a = c;
    }
  }
  return f((a + b) / 2.0);
}

// The probe's stats row (checked), or undefined without a probe.
Tensor sample_of(const nn::LayerProbe* probe) { return probe != nullptr ? probe->sample : Tensor(); }


}  // namespace

bool derivative_from_output(ActivationKind kind) {
  return kind == ActivationKind::kTanh || kind == ActivationKind::kSigmoid ||
         kind == ActivationKind::kELU || kind == ActivationKind::kReLU;
}

double max_local_derivative(const ActivationParams& p) {
  switch (p.kind) {
    case ActivationKind::kSigmoid: return 0.25;  // y(1 − y) at y = ½
    case ActivationKind::kLeakyReLU: return std::max(1.0, std::abs(p.negative_slope));
    case ActivationKind::kELU: return std::max(1.0, p.alpha);  // α·e^x → α as x → 0⁻
    case ActivationKind::kGELU: {
      // f″(x) = φ(x)(2 − x²) = 0 at x = √2: f′(√2) = Φ(√2) + √2·φ(√2).
      const double x = M_SQRT2;
      return 0.5 * (1.0 + std::erf(x * M_SQRT1_2)) + x * std::exp(-0.5 * x * x) * M_2_SQRTPI * M_SQRT1_2 * 0.5;
    }
    case ActivationKind::kGELUTanh:
      return golden_section_max(
          [](double x) {
            const double beta = M_SQRT2 * M_2_SQRTPI * 0.5;
            const double th = std::tanh(beta * (x + 0.044715 * x * x * x));
            return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * beta * (1 + 3 * 0.044715 * x * x);
          },
          0.0, 4.0);
    case ActivationKind::kSiLU:
      return golden_section_max(
          [](double x) {
            const double s = 1.0 / (1.0 + std::exp(-x));
            return s * (1.0 + x * (1.0 - s));
          },
          0.0, 6.0);
    default: return 1.0;  // tanh, softsign, hardtanh, relu: f′(0) = 1
  }
}

namespace detail {

Tensor activation_stats_row(const nn::LayerProbe* probe, const Tensor& input, const char* op) {
  if (probe == nullptr || !probe->stats.defined()) return {};
  const Tensor& stats = probe->stats;
  TORCH_CHECK(stats.scalar_type() == torch::kDouble && stats.dim() == 1 &&
                  stats.numel() == slot::kCount,
              op, ": expected a float64 stats row of ", static_cast<int64_t>(slot::kCount),
              " slots, got ", stats.scalar_type(), " of shape ", stats.sizes());
  TORCH_CHECK(stats.device() == input.device(), op, ": expected the stats row on the input's device ",
              input.device(), ", got ", stats.device());
  const Tensor& sample = probe->sample;
  TORCH_CHECK(!sample.defined() || (sample.scalar_type() == torch::kFloat && sample.dim() == 1 &&
                                    sample.device() == input.device()),
              op, ": expected the probe's sample to be a float32 vector on ", input.device(), ", got ",
              sample.scalar_type(), " of shape ", sample.sizes(), " on ", sample.device());
  return stats;
}

const char* activation_op_name(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::kTanh: return "bnlab::tanh";
    case ActivationKind::kSigmoid: return "bnlab::sigmoid";
    case ActivationKind::kSoftsign: return "bnlab::softsign";
    case ActivationKind::kHardtanh: return "bnlab::hardtanh";
    case ActivationKind::kReLU: return "bnlab::relu";
    case ActivationKind::kLeakyReLU: return "bnlab::leaky_relu";
    case ActivationKind::kELU: return "bnlab::elu";
    case ActivationKind::kGELU:
    case ActivationKind::kGELUTanh: return "bnlab::gelu";
    case ActivationKind::kSiLU: return "bnlab::silu";
  }
  return "bnlab::activation";
}

void save_activation_params(torch::autograd::AutogradContext* ctx, const ActivationParams& params) {
  ctx->saved_data["kind"] = static_cast<int64_t>(params.kind);
  ctx->saved_data["min_val"] = params.min_val;
  ctx->saved_data["max_val"] = params.max_val;
  ctx->saved_data["negative_slope"] = params.negative_slope;
  ctx->saved_data["alpha"] = params.alpha;
  ctx->saved_data["threshold"] = params.saturation_threshold;
}

ActivationParams load_activation_params(torch::autograd::AutogradContext* ctx) {
  ActivationParams params;
  params.kind = static_cast<ActivationKind>(ctx->saved_data["kind"].toInt());
  params.min_val = ctx->saved_data["min_val"].toDouble();
  params.max_val = ctx->saved_data["max_val"].toDouble();
  params.negative_slope = ctx->saved_data["negative_slope"].toDouble();
  params.alpha = ctx->saved_data["alpha"].toDouble();
  params.saturation_threshold = ctx->saved_data["threshold"].toDouble();
  return params;
}

}  // namespace detail

Tensor ElementwiseActivationFunction::forward(torch::autograd::AutogradContext* ctx,
                                              const Tensor& input, const ActivationParams& params,
                                              const nn::LayerProbe* probe, bool inplace) {
  const char* op = detail::activation_op_name(params.kind);
  TORCH_CHECK(input.defined(), op, ": expected an input tensor, got an undefined tensor");
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op,
              ": expected a floating-point input, got ", input.scalar_type());
  TORCH_CHECK(!inplace || kernels::derivative_available_from_output(params), op,
              ": in-place is only supported where the derivative can be read from the output "
              "(tanh, sigmoid, relu, hardtanh, elu, leaky_relu with negative_slope >= 0)");
  const Tensor stats = detail::activation_stats_row(probe, input, op);
  Tensor output = inplace ? input : at::empty_like(input);
  kernels::activation_forward(input, output, params, stats, sample_of(probe));
  const bool saved_is_output = inplace || derivative_from_output(params.kind);
  if (inplace) ctx->mark_dirty({input});
  ctx->save_for_backward({saved_is_output ? output : input});
  ctx->saved_data["saved_is_output"] = saved_is_output;
  ctx->saved_data["stats"] = stats;
  detail::save_activation_params(ctx, params);
  return output;
}

torch::autograd::variable_list ElementwiseActivationFunction::backward(
    torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad_outputs) {
  const ActivationParams params = detail::load_activation_params(ctx);
  const bool saved_is_output = ctx->saved_data["saved_is_output"].toBool();
  const auto& stats_value = ctx->saved_data["stats"];
  const Tensor stats = stats_value.isTensor() ? stats_value.toTensor() : Tensor();
  const Tensor saved = ctx->get_saved_variables()[0];
  const Tensor& grad_output = grad_outputs[0];

  Tensor grad_input;
  if (at::GradMode::is_enabled()) {
    // create_graph: differentiable ops of the saved tensor (see the header),
    // in float64 for reduced-precision inputs: derivative formulas such as
    // GELU's cancel (1 + tanh u → 0 in the left tail), and their derivatives
    // amplify that rounding. The casts are differentiable.
    const Tensor v = saved.scalar_type() == torch::kDouble ? saved : saved.to(torch::kDouble);
    auto derivative = saved_is_output ? kernels::activation_derivative(Tensor(), v, params)
                                      : kernels::activation_derivative(v, Tensor(), params);
    grad_input = grad_output * derivative.to(saved.scalar_type());
    if (stats.defined()) {
      torch::NoGradGuard no_grad;
      auto g = grad_output.detach().to(torch::kDouble);
      auto gx = grad_input.detach().to(torch::kDouble);
      stats.select(0, slot::kGradOutputSumSq).copy_((g * g).sum());
      stats.select(0, slot::kGradInputSumSq).copy_((gx * gx).sum());
      stats.select(0, slot::kNonFiniteGradInput).copy_(gx.isfinite().logical_not().sum());
    }
  } else {
    grad_input = kernels::activation_backward(grad_output, saved, saved_is_output, params, stats);
  }
  return {grad_input, Tensor(), Tensor(), Tensor()};
}

// ---- Maxout -----------------------------------------------------------------

namespace {

// The (N, C, k, rest) view of an (N, C·k, *) input.
std::vector<int64_t> grouped_shape(const Tensor& input, int64_t pieces) {
  std::vector<int64_t> shape{input.size(0), input.size(1) / pieces, pieces};
  int64_t rest = 1;
  for (int64_t d = 2; d < input.dim(); ++d) rest *= input.size(d);
  shape.push_back(rest);
  return shape;
}

std::vector<int64_t> output_shape(const Tensor& input, int64_t pieces) {
  auto shape = input.sizes().vec();
  shape[1] /= pieces;
  return shape;
}

}  // namespace

Tensor MaxoutFunction::forward(torch::autograd::AutogradContext* ctx, const Tensor& input,
                               int64_t pieces, const nn::LayerProbe* probe) {
  constexpr const char* op = "bnlab::maxout";
  TORCH_CHECK(pieces >= 1, op, ": expected pieces >= 1, got ", pieces);
  TORCH_CHECK(input.dim() >= 2, op, ": expected an input of shape (N, C·k, *) with at least 2 dims, got ",
              input.dim(), "D input of shape ", input.sizes());
  TORCH_CHECK(input.size(1) % pieces == 0, op, ": expected the channel count (dim 1) to be divisible by pieces=",
              pieces, ", got ", input.size(1), " channels in input of shape ", input.sizes());
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op, ": expected a floating-point input, got ",
              input.scalar_type());
  const Tensor stats = detail::activation_stats_row(probe, input, op);
  auto grouped = input.reshape(grouped_shape(input, pieces));
  auto [values, indices] = grouped.max(/*dim=*/2);
  Tensor output = values.reshape(output_shape(input, pieces));
  if (stats.defined()) {
    const Tensor& s = stats;
    auto x = input.to(torch::kDouble);
    auto y = output.to(torch::kDouble);
    s.select(0, slot::kInputCount).fill_(static_cast<double>(input.numel()));
    s.select(0, slot::kOutputCount).fill_(static_cast<double>(output.numel()));
    s.select(0, slot::kUnits).fill_(static_cast<double>(output.size(1)));
    s.select(0, slot::kSaturated).fill_(0.0);
    s.select(0, slot::kDeadUnits).fill_(0.0);
    // Each output passes its gradient whole to its winner: Σ f′ = #outputs.
    s.select(0, slot::kDerivativeSum).fill_(static_cast<double>(output.numel()));
    s.select(0, slot::kInputSum).copy_(x.sum());
    s.select(0, slot::kInputSumSq).copy_((x * x).sum());
    s.select(0, slot::kOutputSum).copy_(y.sum());
    s.select(0, slot::kOutputSumSq).copy_((y * y).sum());
    s.select(0, slot::kNonFiniteOutput).copy_(output.isfinite().logical_not().sum());
    if (probe->sample.defined()) kernels::copy_input_sample(input.contiguous(), probe->sample, s);
  }
  ctx->save_for_backward({indices});
  ctx->saved_data["input_shape"] = input.sizes().vec();
  ctx->saved_data["pieces"] = pieces;
  ctx->saved_data["stats"] = stats;
  return output;
}

torch::autograd::variable_list MaxoutFunction::backward(torch::autograd::AutogradContext* ctx,
                                                        torch::autograd::variable_list grad_outputs) {
  const Tensor indices = ctx->get_saved_variables()[0];
  const auto input_shape = ctx->saved_data["input_shape"].toIntVector();
  const int64_t pieces = ctx->saved_data["pieces"].toInt();
  const Tensor& grad_output = grad_outputs[0];
  // Scatter each output's gradient to its winning piece; differentiable in
  // grad_output, so the same code serves create_graph.
  auto grouped_grad = grad_output.reshape(indices.sizes()).unsqueeze(2);
  auto shape = indices.sizes().vec();
  shape.insert(shape.begin() + 2, pieces);
  auto grad_input = at::zeros(shape, grad_output.options())
                        .scatter(2, indices.unsqueeze(2), grouped_grad)
                        .reshape(input_shape);
  const auto& stats_value = ctx->saved_data["stats"];
  if (stats_value.isTensor() && stats_value.toTensor().defined()) {
    torch::NoGradGuard no_grad;
    const Tensor s = stats_value.toTensor();
    auto g = grad_output.detach().to(torch::kDouble);
    auto gx = grad_input.detach().to(torch::kDouble);
    s.select(0, slot::kGradOutputSumSq).copy_((g * g).sum());
    s.select(0, slot::kGradInputSumSq).copy_((gx * gx).sum());
    s.select(0, slot::kNonFiniteGradInput).copy_(gx.isfinite().logical_not().sum());
  }
  return {grad_input, Tensor(), Tensor()};
}

}  // namespace bnlab::autograd
