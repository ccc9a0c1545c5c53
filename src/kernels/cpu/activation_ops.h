// The activations as operations on at::vec::Vectorized lanes, shared by the
// activation kernels and the fused BatchNorm + activation kernels. Included
// only from kernel sources (compiled per CPU capability).
#pragma once

#include "bnlab/nn/probe.h"
#include "kernels/activation.h"
#include "kernels/cpu/fast_tanh.h"
#include "kernels/cpu/per_thread_sums.h"
#include "kernels/cpu/vec_helpers.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

using at::vec::Vectorized;

// ---- the activations, on vectors -------------------------------------------
// forward(x); derivative(v) from v = x or v = y (kFromOutput); saturated(x, y)
// returns a lane mask.

template <typename T>
struct TanhOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = true;
  V t;
  explicit TanhOp(const ActivationParams& p) : t(static_cast<T>(p.saturation_threshold)) {}
  V forward(V x) const { return fast_tanh(x); }
  V derivative(V y) const { return V(T(1)) - y * y; }
  V saturated(V, V y) const { return y.abs() > t; }
};

template <typename T>
struct SigmoidOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = true;
  V t;
  explicit SigmoidOp(const ActivationParams& p) : t(static_cast<T>(p.saturation_threshold)) {}
  V forward(V x) const { return (V(T(1)) + x.neg().exp()).reciprocal(); }
  V derivative(V y) const { return y * (V(T(1)) - y); }
  V saturated(V, V y) const { return (y * V(T(2)) - V(T(1))).abs() > t; }
};

template <typename T>
struct SoftsignOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = false;
  V t;
  explicit SoftsignOp(const ActivationParams& p) : t(static_cast<T>(p.saturation_threshold)) {}
  V forward(V x) const { return x / (V(T(1)) + x.abs()); }
  V derivative(V x) const {
    V d = V(T(1)) + x.abs();
    return (d * d).reciprocal();
  }
  V saturated(V, V y) const { return y.abs() > t; }
};

template <typename T>
struct HardtanhOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = false;  // either works: y is x clamped
  V lo, hi;
  explicit HardtanhOp(const ActivationParams& p)
      : lo(static_cast<T>(p.min_val)), hi(static_cast<T>(p.max_val)) {}
  V forward(V x) const { return at::vec::minimum(at::vec::maximum(x, lo), hi); }
  V derivative(V v) const { return V::blendv(V(T(0)), V(T(1)), (v > lo) & (v < hi)); }
  V saturated(V x, V) const { return (x < lo) | (x > hi); }
};

template <typename T>
struct ReLUOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = true;
  explicit ReLUOp(const ActivationParams&) {}
  // x > 0 ? x : 0, keeping NaN (as torch.relu does).
  V forward(V x) const { return V::blendv(x, V(T(0)), x <= V(T(0))); }
  V derivative(V y) const { return V::blendv(V(T(0)), V(T(1)), y > V(T(0))); }
  V saturated(V x, V) const { return x <= V(T(0)); }
};

template <typename T>
struct LeakyReLUOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = false;
  V slope;
  explicit LeakyReLUOp(const ActivationParams& p) : slope(static_cast<T>(p.negative_slope)) {}
  V forward(V x) const { return V::blendv(x * slope, x, x > V(T(0))); }
  V derivative(V x) const { return V::blendv(slope, V(T(1)), x > V(T(0))); }
  V saturated(V, V) const { return V(T(0)) == V(T(1)); }  // never: an all-false mask
};

template <typename T>
struct ELUOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = true;
  V alpha, limit;
  explicit ELUOp(const ActivationParams& p)
      : alpha(static_cast<T>(p.alpha)),
        limit(static_cast<T>(-p.alpha * p.saturation_threshold)) {}
  V forward(V x) const { return V::blendv(x.expm1() * alpha, x, x > V(T(0))); }
  V derivative(V y) const { return V::blendv(y + alpha, V(T(1)), y > V(T(0))); }
  V saturated(V, V y) const { return y < limit; }
};

template <typename T>
struct GELUOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = false;
  V flat;
  explicit GELUOp(const ActivationParams& p)
      : flat(static_cast<T>(1.0 - p.saturation_threshold * p.saturation_threshold)) {}
  V forward(V x) const {
    return x * V(T(0.5)) * (V(T(1)) + (x * V(static_cast<T>(M_SQRT1_2))).erf());
  }
  V derivative(V x) const {
    const V cdf = V(T(0.5)) * (V(T(1)) + (x * V(static_cast<T>(M_SQRT1_2))).erf());
    const V pdf = (x * x * V(T(-0.5))).exp() * V(static_cast<T>(M_2_SQRTPI * M_SQRT1_2 * 0.5));
    return cdf + x * pdf;
  }
  V saturated(V x, V) const { return (x < V(T(0))) & (derivative(x).abs() < flat); }
};

template <typename T>
struct GELUTanhOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = false;
  static constexpr T kBeta = static_cast<T>(M_SQRT2 * M_2_SQRTPI * 0.5);  // √(2/π)
  static constexpr T kKappa = static_cast<T>(0.044715);
  V flat;
  explicit GELUTanhOp(const ActivationParams& p)
      : flat(static_cast<T>(1.0 - p.saturation_threshold * p.saturation_threshold)) {}
  V forward(V x) const {
    const V inner = V(kBeta) * (x + V(kKappa) * x * x * x);
    return V(T(0.5)) * x * (V(T(1)) + fast_tanh(inner));
  }
  V derivative(V x) const {
    const V x2 = x * x;
    const V th = fast_tanh(V(kBeta) * (x + V(kKappa) * x2 * x));
    const V du = V(kBeta) * (V(T(1)) + V(T(3) * kKappa) * x2);
    return V(T(0.5)) * (V(T(1)) + th) + V(T(0.5)) * x * (V(T(1)) - th * th) * du;
  }
  V saturated(V x, V) const { return (x < V(T(0))) & (derivative(x).abs() < flat); }
};

template <typename T>
struct SiLUOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = false;
  V flat;
  explicit SiLUOp(const ActivationParams& p)
      : flat(static_cast<T>(1.0 - p.saturation_threshold * p.saturation_threshold)) {}
  V forward(V x) const { return x / (V(T(1)) + x.neg().exp()); }
  V derivative(V x) const {
    const V s = (V(T(1)) + x.neg().exp()).reciprocal();
    return s * (V(T(1)) + x * (V(T(1)) - s));
  }
  V saturated(V x, V) const { return (x < V(T(0))) & (derivative(x).abs() < flat); }
};

// Calls f(Op<T>{params}) for the kind in `params`.
template <typename T, typename F>
void with_op(const ActivationParams& params, F&& f) {
  switch (params.kind) {
    case ActivationKind::kTanh: return f(TanhOp<T>(params));
    case ActivationKind::kSigmoid: return f(SigmoidOp<T>(params));
    case ActivationKind::kSoftsign: return f(SoftsignOp<T>(params));
    case ActivationKind::kHardtanh: return f(HardtanhOp<T>(params));
    case ActivationKind::kReLU: return f(ReLUOp<T>(params));
    case ActivationKind::kLeakyReLU: return f(LeakyReLUOp<T>(params));
    case ActivationKind::kELU: return f(ELUOp<T>(params));
    case ActivationKind::kGELU: return f(GELUOp<T>(params));
    case ActivationKind::kGELUTanh: return f(GELUTanhOp<T>(params));
    case ActivationKind::kSiLU: return f(SiLUOp<T>(params));
  }
}

// Totals of one thread. Vector partial sums are flushed to doubles every
// kFlushVectors vectors (bounding float32 accumulation error) and at the end.
// Non-finite outputs are not counted per element: a NaN/Inf makes Σy or Σy²
// non-finite, and only then does a second pass count them (see below).
inline constexpr int64_t kFlushVectors = 256;
inline constexpr int kTotals = 6;  // saturated, Σf′, Σx, Σx², Σy, Σy²

template <typename T>
struct ForwardTotals {
  using V = Vectorized<T>;
  // Named vector sums rather than an array: GCC keeps named members of a
  // local accumulator in registers but spilled the array to the stack, which
  // put a store-to-load round trip on every accumulation (2.5x slower).
  V saturated{T(0)}, derivative{T(0)}, x_sum{T(0)}, x_sq{T(0)}, y_sum{T(0)}, y_sq{T(0)};
  double totals[kTotals] = {0, 0, 0, 0, 0, 0};
  int64_t pending = 0;

  // One vector whose every lane is data; returns the saturation lane mask.
  template <typename Op>
  C10_ALWAYS_INLINE V add_full(const Op& op, V x, V y) {
    const V sat = op.saturated(x, y);
    saturated = saturated + (sat & V(T(1)));
    derivative = derivative + op.derivative(Op::kFromOutput ? y : x);
    x_sum = x_sum + x;
    x_sq = at::vec::fmadd(x, x, x_sq);
    y_sum = y_sum + y;
    y_sq = at::vec::fmadd(y, y, y_sq);
    if (++pending == kFlushVectors) flush();
    return sat;
  }
  // A vector whose lanes outside `valid` must not count; returns the
  // saturation lane mask, with the lanes outside `valid` set (saturated).
  template <typename Op>
  C10_ALWAYS_INLINE V add_masked(const Op& op, V x, V y, V valid) {
    const V sat = op.saturated(x, y);
    saturated = saturated + ((sat & valid) & V(T(1)));
    x = x & valid;
    y = y & valid;
    derivative = derivative + (op.derivative(Op::kFromOutput ? y : x) & valid);
    x_sum = x_sum + x;
    x_sq = at::vec::fmadd(x, x, x_sq);
    y_sum = y_sum + y;
    y_sq = at::vec::fmadd(y, y, y_sq);
    if (++pending == kFlushVectors) flush();
    return sat | (valid ^ (V(T(0)) == V(T(0))));
  }
  C10_ALWAYS_INLINE void flush() {
    const V zero(T(0));
    totals[0] += horizontal_sum(saturated);
    totals[1] += horizontal_sum(derivative);
    totals[2] += horizontal_sum(x_sum);
    totals[3] += horizontal_sum(x_sq);
    totals[4] += horizontal_sum(y_sum);
    totals[5] += horizontal_sum(y_sq);
    saturated = derivative = x_sum = x_sq = y_sum = y_sq = zero;
    pending = 0;
  }
};

using ForwardSums = PerThreadSums<kTotals>;

// Flushes a thread's local accumulator into its slot of `acc`. Kernels count
// into a local ForwardTotals (whose vector sums then stay in registers) rather
// than into acc[thread] through a reference.
template <typename T>
C10_ALWAYS_INLINE void add_thread_totals(ForwardSums& acc, ForwardTotals<T>& local) {
  local.flush();
  auto& dst = acc[at::get_thread_num()];
  for (int k = 0; k < kTotals; ++k) dst[k] += local.totals[k];
}

// Writes the totals of the forward into the activation_stat row.
template <typename T>
void finish_forward_stats(const ForwardSums& acc, double dead_units, const T* y, int64_t n, double* stats) {
  const std::array<double, kTotals> totals = acc.total();
  stats[nn::activation_stat::kSaturated] = totals[0];
  stats[nn::activation_stat::kDerivativeSum] = totals[1];
  stats[nn::activation_stat::kInputSum] = totals[2];
  stats[nn::activation_stat::kInputSumSq] = totals[3];
  stats[nn::activation_stat::kOutputSum] = totals[4];
  stats[nn::activation_stat::kOutputSumSq] = totals[5];
  stats[nn::activation_stat::kDeadUnits] = dead_units;
  // Rare path: only non-finite sums send us counting the non-finite outputs.
  double nonfinite = 0.0;
  if (!std::isfinite(totals[4]) || !std::isfinite(totals[5])) {
    for (int64_t i = 0; i < n; ++i) nonfinite += std::isfinite(y[i]) ? 0.0 : 1.0;
  }
  stats[nn::activation_stat::kNonFiniteOutput] = nonfinite;
}

}  // inline namespace CPU_CAPABILITY
}  // namespace bnlab::kernels::cpu
