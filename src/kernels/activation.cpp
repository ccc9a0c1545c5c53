#include "kernels/activation.h"

#include "bnlab/nn/probe.h"
#include "kernels/cpu/activation_kernel.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

namespace bnlab::kernels {

namespace slot = nn::activation_stat;

namespace cpu {
KernelStub<ActivationForwardFn> activation_forward_stub;
KernelStub<ActivationBackwardFn> activation_backward_stub;
}  // namespace cpu

namespace {

bool same_strides(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && a.strides() == b.strides();
}

// Sets a slot of the stats row: directly on CPU, with a device op elsewhere.
void set_slot(const torch::Tensor& stats, int64_t index, double value) {
  if (stats.device().is_cpu()) {
    stats.data_ptr<double>()[index] = value;
  } else {
    stats.select(0, index).fill_(value);
  }
}

// Writes a scalar tensor into a slot of the stats row without a host sync.
void put(const torch::Tensor& stats, int64_t index, const torch::Tensor& value) {
  stats.select(0, index).copy_(value.to(torch::kDouble).reshape({}));
}

// The forward slots from ATen ops (devices and dtypes without a CPU kernel).
void composite_forward_stats(const torch::Tensor& x, const torch::Tensor& y,
                             const ActivationParams& params, const torch::Tensor& stats) {
  auto xd = x.to(torch::kDouble);
  auto yd = y.to(torch::kDouble);
  auto sat = activation_saturated(x, y, params);
  put(stats, slot::kSaturated, sat.sum());
  if (sat.dim() >= 2) {
    // A unit is dead when every element of its slice along dim 1 is saturated.
    auto per_unit = sat.transpose(0, 1).reshape({sat.size(1), -1}).all(1);
    put(stats, slot::kDeadUnits, per_unit.sum());
  } else {
    put(stats, slot::kDeadUnits, sat.sum());
  }
  put(stats, slot::kDerivativeSum, activation_derivative(x, y, params).to(torch::kDouble).sum());
  put(stats, slot::kInputSum, xd.sum());
  put(stats, slot::kInputSumSq, (xd * xd).sum());
  put(stats, slot::kOutputSum, yd.sum());
  put(stats, slot::kOutputSumSq, (yd * yd).sum());
  put(stats, slot::kNonFiniteOutput, y.isfinite().logical_not().sum());
}

}  // namespace

c10::optional<UnitLayout> unit_layout(const torch::Tensor& t) {
  UnitLayout layout;
  if (t.dim() == 0) return layout;
  if (t.dim() == 1) {
    layout.units = t.size(0);
    return t.is_contiguous() ? c10::optional<UnitLayout>(layout) : c10::nullopt;
  }
  layout.units = t.size(1);
  int64_t spatial = 1;
  for (int64_t d = 2; d < t.dim(); ++d) spatial *= t.size(d);
  if (t.is_contiguous()) {
    layout.outer = t.size(0);
    layout.inner = spatial;
    return layout;
  }
  const bool channels_last =
      (t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast)) ||
      (t.dim() == 5 && t.is_contiguous(at::MemoryFormat::ChannelsLast3d));
  if (channels_last) {
    layout.outer = t.size(0) * spatial;
    layout.inner = 1;
    return layout;
  }
  return c10::nullopt;
}

SamplePlan sample_plan(int64_t n, int64_t capacity, int64_t period) {
  SamplePlan plan;
  if (capacity <= 0) return plan;  // an empty sample keeps nothing
  if (n > capacity) {
    plan.stride = (n + capacity - 1) / capacity;
    // Terminates: some s in any run of consecutive integers is coprime with
    // period (a prime above period's largest prime factor, at worst).
    while (std::gcd(plan.stride, std::max<int64_t>(period, 1)) != 1) ++plan.stride;
  }
  plan.count = n == 0 ? 0 : (n + plan.stride - 1) / plan.stride;
  return plan;
}

int64_t sample_period(const torch::Tensor& t) {
  return t.dim() >= 2 && t.size(0) > 0 ? t.numel() / t.size(0) : t.numel();
}

void copy_input_sample(const torch::Tensor& input, const torch::Tensor& sample,
                       const torch::Tensor& stats) {
  const int64_t n = input.numel();
  const auto [stride, count] = sample_plan(n, sample.numel(), sample_period(input));
  if (input.device().is_cpu() && sample.device().is_cpu() && input.is_contiguous() &&
      sample.is_contiguous() && sample.scalar_type() == torch::kFloat &&
      (input.scalar_type() == torch::kFloat || input.scalar_type() == torch::kDouble)) {
    auto* out = sample.data_ptr<float>();
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "bnlab_copy_input_sample", [&] {
      const auto* x = input.data_ptr<scalar_t>();
      if constexpr (std::is_same_v<scalar_t, float>) {
        if (stride == 1) {
          std::memcpy(out, x, static_cast<size_t>(count) * sizeof(float));
          return;
        }
      }
      for (int64_t i = 0; i < count; ++i) out[i] = static_cast<float>(x[i * stride]);
    });
  } else if (count > 0) {
    sample.narrow(0, 0, count).copy_(input.reshape(-1).slice(0, 0, n, stride));
  }
  set_slot(stats, slot::kSampleCount, static_cast<double>(count));
}

void activation_forward(const torch::Tensor& input, const torch::Tensor& out,
                        const ActivationParams& params, const torch::Tensor& stats,
                        const torch::Tensor& sample) {
  const bool want_stats = stats.defined();
  if (want_stats) {
    TORCH_CHECK(stats.scalar_type() == torch::kDouble && stats.dim() == 1 &&
                    stats.numel() >= slot::kCount,
                "bnlab activation: expected a float64 stats row of ", slot::kCount,
                " slots, got ", stats.scalar_type(), " of shape ", stats.sizes());
    const int64_t units = input.dim() >= 2 ? input.size(1) : input.dim() == 1 ? input.size(0) : 1;
    set_slot(stats, slot::kInputCount, static_cast<double>(input.numel()));
    set_slot(stats, slot::kOutputCount, static_cast<double>(input.numel()));
    set_slot(stats, slot::kUnits, static_cast<double>(units));
  }
  auto kernel = cpu::activation_forward_stub.get();
  const bool cpu_kernel = input.device().is_cpu() &&
                          (input.scalar_type() == torch::kFloat ||
                           input.scalar_type() == torch::kDouble) &&
                          (!want_stats || stats.device().is_cpu()) && kernel != nullptr;
  if (cpu_kernel) {
    auto layout = unit_layout(input);
    torch::Tensor x = input;
    if (!input.is_non_overlapping_and_dense() || !layout.has_value()) {
      x = input.contiguous();
      layout = unit_layout(x);
    }
    torch::Tensor y = same_strides(x, out) ? out : torch::empty_like(x);
    kernel(x, y, params, *layout, want_stats ? stats.data_ptr<double>() : nullptr);
    if (!y.is_same(out)) out.copy_(y);
    // The sample is a memcpy of its own rather than stores inside the
    // statistics pass: measured per recorded tanh forward at (32, 100), the
    // in-pass copy was 8-10 % slower (a store per vector there costs more
    // than one fast copy of 12.8 KB from cache).
    if (want_stats && sample.defined()) copy_input_sample(x, sample, stats);
    return;
  }
  auto y = activation_composite(input, params);
  if (want_stats) {
    composite_forward_stats(input, y, params, stats);
    if (sample.defined()) copy_input_sample(input, sample, stats);
  }
  out.copy_(y);
}

torch::Tensor activation_backward(const torch::Tensor& grad_output, const torch::Tensor& saved,
                                  bool saved_is_output, const ActivationParams& params,
                                  const torch::Tensor& stats) {
  auto kernel = cpu::activation_backward_stub.get();
  const bool stats_on_cpu = !stats.defined() || stats.device().is_cpu();
  if (saved.device().is_cpu() && saved.is_non_overlapping_and_dense() &&
      (saved.scalar_type() == torch::kFloat || saved.scalar_type() == torch::kDouble) &&
      grad_output.scalar_type() == saved.scalar_type() && grad_output.device().is_cpu() &&
      stats_on_cpu && kernel != nullptr) {
    auto g = same_strides(grad_output, saved) ? grad_output
                                              : torch::empty_like(saved).copy_(grad_output);
    auto grad_input = torch::empty_like(saved);
    kernel(g, saved, grad_input, params, stats.defined() ? stats.data_ptr<double>() : nullptr);
    return grad_input;
  }
  auto derivative = saved_is_output ? activation_derivative(torch::Tensor(), saved, params)
                                    : activation_derivative(saved, torch::Tensor(), params);
  auto grad_input = grad_output * derivative;
  if (stats.defined()) {
    auto g = grad_output.to(torch::kDouble);
    auto gx = grad_input.to(torch::kDouble);
    put(stats, slot::kGradOutputSumSq, (g * g).sum());
    put(stats, slot::kGradInputSumSq, (gx * gx).sum());
    put(stats, slot::kNonFiniteGradInput, grad_input.isfinite().logical_not().sum());
  }
  return grad_input;
}

bool derivative_available_from_output(const ActivationParams& params) {
  switch (params.kind) {
    case ActivationKind::kTanh:
    case ActivationKind::kSigmoid:
    case ActivationKind::kELU:
    case ActivationKind::kReLU:
    case ActivationKind::kHardtanh: return true;
    case ActivationKind::kLeakyReLU: return params.negative_slope >= 0;
    default: return false;
  }
}

torch::Tensor activation_composite(const torch::Tensor& x, const ActivationParams& p) {
  switch (p.kind) {
    case ActivationKind::kTanh: return x.tanh();
    case ActivationKind::kSigmoid: return (1 + (-x).exp()).reciprocal();
    case ActivationKind::kSoftsign: return x / (1 + x.abs());
    case ActivationKind::kHardtanh: return x.clamp(p.min_val, p.max_val);
    case ActivationKind::kReLU: return torch::where(x <= 0, torch::zeros_like(x), x);
    case ActivationKind::kLeakyReLU: return torch::where(x > 0, x, x * p.negative_slope);
    case ActivationKind::kELU: return torch::where(x > 0, x, x.expm1() * p.alpha);
    case ActivationKind::kGELU: return x * 0.5 * (1 + (x * M_SQRT1_2).erf());
    case ActivationKind::kGELUTanh: {
      const double beta = M_SQRT2 * M_2_SQRTPI * 0.5;
      return 0.5 * x * (1 + (beta * (x + 0.044715 * x * x * x)).tanh());
    }
    case ActivationKind::kSiLU: return x / (1 + (-x).exp());
  }
  TORCH_CHECK(false, "bnlab activation: unknown kind ", static_cast<int>(p.kind));
}

torch::Tensor activation_derivative(const torch::Tensor& x, const torch::Tensor& y,
                                    const ActivationParams& p) {
  switch (p.kind) {
    case ActivationKind::kTanh: return 1 - y * y;
    case ActivationKind::kSigmoid: return y * (1 - y);
    case ActivationKind::kSoftsign: {
      auto d = 1 + x.abs();
      return (d * d).reciprocal();
    }
    case ActivationKind::kHardtanh: {
      const auto& v = x.defined() ? x : y;
      return ((v > p.min_val) & (v < p.max_val)).to(v.scalar_type());
    }
    case ActivationKind::kReLU: {
      const auto& v = y.defined() ? y : x;
      return (v > 0).to(v.scalar_type());
    }
    case ActivationKind::kLeakyReLU: {
      const auto& v = x.defined() ? x : y;
      return torch::where(v > 0, torch::ones_like(v), torch::full_like(v, p.negative_slope));
    }
    case ActivationKind::kELU:
      // α at y = 0 as a constant: PyTorch's second derivative there is 0 (its
      // double backward masks with x < 0), while y + α would pass f′(0) on.
      return torch::where(y > 0, torch::ones_like(y),
                          torch::where(y < 0, y + p.alpha, torch::full_like(y, p.alpha)));
    case ActivationKind::kGELU: {
      auto cdf = 0.5 * (1 + (x * M_SQRT1_2).erf());
      auto pdf = (-0.5 * x * x).exp() * (M_2_SQRTPI * M_SQRT1_2 * 0.5);
      return cdf + x * pdf;
    }
    case ActivationKind::kGELUTanh: {
      const double beta = M_SQRT2 * M_2_SQRTPI * 0.5;
      auto x2 = x * x;
      auto th = (beta * (x + 0.044715 * x2 * x)).tanh();
      return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * (beta * (1 + 3 * 0.044715 * x2));
    }
    case ActivationKind::kSiLU: {
      auto s = (1 + (-x).exp()).reciprocal();
      return s * (1 + x * (1 - s));
    }
  }
  TORCH_CHECK(false, "bnlab activation: unknown kind ", static_cast<int>(p.kind));
}

torch::Tensor activation_saturated(const torch::Tensor& x, const torch::Tensor& y,
                                   const ActivationParams& p) {
  const double t = p.saturation_threshold;
  switch (p.kind) {
    case ActivationKind::kTanh:
    case ActivationKind::kSoftsign: return y.abs() > t;
    case ActivationKind::kSigmoid: return (2 * y - 1).abs() > t;
    case ActivationKind::kHardtanh: return (x < p.min_val) | (x > p.max_val);
    case ActivationKind::kReLU: return x <= 0;
    case ActivationKind::kLeakyReLU: return torch::zeros_like(x, torch::kBool);
    case ActivationKind::kELU: return y < -p.alpha * t;
    case ActivationKind::kGELU:
    case ActivationKind::kGELUTanh:
    case ActivationKind::kSiLU:
      return (x < 0) & (activation_derivative(x, y, p).abs() < 1 - t * t);
  }
  TORCH_CHECK(false, "bnlab activation: unknown kind ", static_cast<int>(p.kind));
}

}  // namespace bnlab::kernels
