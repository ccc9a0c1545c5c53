// Vectorized CPU kernels of the elementwise activations. Compiled once per CPU
// capability (see dispatch.h); everything here lives in that capability's namespace.
#include "kernels/cpu/activation_kernel.h"

#include "bnlab/nn/probe.h"
#include "kernels/cpu/vec_helpers.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <vector>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

namespace {

using at::vec::Vectorized;
namespace slot = nn::activation_stat;

// ---- the activations, on vectors -------------------------------------------
// forward(x); derivative(v) from v = x or v = y (kFromOutput); saturated(x, y)
// returns a lane mask.

template <typename T>
struct TanhOp {
  using V = Vectorized<T>;
  static constexpr bool kFromOutput = true;
  V t;
  explicit TanhOp(const ActivationParams& p) : t(static_cast<T>(p.saturation_threshold)) {}
  V forward(V x) const { return x.tanh(); }
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
    return V(T(0.5)) * x * (V(T(1)) + inner.tanh());
  }
  V derivative(V x) const {
    const V x2 = x * x;
    const V th = (V(kBeta) * (x + V(kKappa) * x2 * x)).tanh();
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

// ---- forward ----------------------------------------------------------------

constexpr int64_t kGrainElements = 32768;

template <typename T, typename Op>
void forward_plain(const T* x, T* y, int64_t n, const Op& op) {
  using V = Vectorized<T>;
  at::parallel_for(0, n, kGrainElements, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + V::size() <= end; i += V::size()) op.forward(V::loadu(x + i)).store(y + i);
    if (i < end) op.forward(V::loadu(x + i, end - i)).store(y + i, static_cast<int>(end - i));
  });
}

// Running sums of one thread, in vectors, flushed to doubles every block.
template <typename T>
struct ForwardAccumulator {
  using V = Vectorized<T>;
  V saturated{T(0)}, derivative{T(0)}, sx{T(0)}, sx2{T(0)}, sy{T(0)}, sy2{T(0)}, nonfinite{T(0)};
  double totals[7] = {0, 0, 0, 0, 0, 0, 0};

  // Adds the lanes selected by `valid` of one vector of x, y, f′ and the saturation mask.
  void add(V x, V y, V deriv, V sat_mask, V valid) {
    const V zero(T(0));
    const V one(T(1));
    saturated = saturated + V::blendv(zero, one, sat_mask & valid);
    derivative = derivative + V::blendv(zero, deriv, valid);
    x = V::blendv(zero, x, valid);
    y = V::blendv(zero, y, valid);
    sx = sx + x;
    sx2 = sx2 + x * x;
    sy = sy + y;
    sy2 = sy2 + y * y;
    nonfinite = nonfinite + V::blendv(zero, one, non_finite_mask(y) & valid);
  }
  void flush() {
    const V zero(T(0));
    V* parts[7] = {&saturated, &derivative, &sx, &sx2, &sy, &sy2, &nonfinite};
    for (int k = 0; k < 7; ++k) {
      totals[k] += horizontal_sum(*parts[k]);
      *parts[k] = zero;
    }
  }
};

template <typename T, typename Op>
void forward_with_stats(const T* x, T* y, const UnitLayout& layout, const Op& op,
                        double* stats) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const int64_t units = layout.units;
  const int num_threads = at::get_num_threads();
  std::vector<ForwardAccumulator<T>> acc(static_cast<size_t>(num_threads));
  // alive[t][c] = 1 when thread t saw an unsaturated element of unit c.
  std::vector<std::vector<T>> alive(static_cast<size_t>(num_threads),
                                    std::vector<T>(static_cast<size_t>(units), T(0)));
  const V zero(T(0));
  const V one(T(1));

  auto step = [&](ForwardAccumulator<T>& a, const T* xp, T* yp, int64_t count, V& alive_vec) {
    const V valid = lane_mask<T>(count);
    const V xv = count == W ? V::loadu(xp) : V::loadu(xp, count);
    const V yv = op.forward(xv);
    if (count == W) {
      yv.store(yp);
    } else {
      yv.store(yp, static_cast<int>(count));
    }
    const V d = op.derivative(Op::kFromOutput ? yv : xv);
    const V sat = op.saturated(xv, yv);
    a.add(xv, yv, d, sat, valid);
    // Lanes outside the data count as saturated so they never mark a unit alive.
    alive_vec = at::vec::maximum(alive_vec, V::blendv(zero, one, (sat == zero) & valid));
  };

  if (layout.inner > 1) {
    // Blocks of `inner` contiguous elements of one unit.
    const int64_t blocks = layout.outer * units;
    const int64_t grain = std::max<int64_t>(1, kGrainElements / layout.inner);
    at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
      const int t = at::get_thread_num();
      auto& a = acc[static_cast<size_t>(t)];
      for (int64_t b = begin; b < end; ++b) {
        const int64_t offset = b * layout.inner;
        V alive_vec = zero;
        int64_t i = 0;
        int64_t since_flush = 0;
        for (; i < layout.inner; i += W) {
          step(a, x + offset + i, y + offset + i, std::min<int64_t>(W, layout.inner - i), alive_vec);
          if (++since_flush == 1024) {
            a.flush();
            since_flush = 0;
          }
        }
        a.flush();
        if (horizontal_max(alive_vec) > T(0)) alive[static_cast<size_t>(t)][static_cast<size_t>(b % units)] = T(1);
      }
    });
  } else {
    // Rows of `units` elements, one per unit.
    const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(units, 1));
    at::parallel_for(0, layout.outer, grain, [&](int64_t begin, int64_t end) {
      const int t = at::get_thread_num();
      auto& a = acc[static_cast<size_t>(t)];
      T* alive_row = alive[static_cast<size_t>(t)].data();
      int64_t since_flush = 0;
      for (int64_t r = begin; r < end; ++r) {
        const int64_t offset = r * units;
        for (int64_t c = 0; c < units; c += W) {
          const int64_t count = std::min<int64_t>(W, units - c);
          V alive_vec = count == W ? V::loadu(alive_row + c) : V::loadu(alive_row + c, count);
          step(a, x + offset + c, y + offset + c, count, alive_vec);
          if (count == W) {
            alive_vec.store(alive_row + c);
          } else {
            alive_vec.store(alive_row + c, static_cast<int>(count));
          }
          if (++since_flush == 1024) {
            a.flush();
            since_flush = 0;
          }
        }
      }
      a.flush();
    });
  }

  double totals[7] = {0, 0, 0, 0, 0, 0, 0};
  for (auto& a : acc) {
    for (int k = 0; k < 7; ++k) totals[k] += a.totals[k];
  }
  int64_t alive_units = 0;
  for (int64_t c = 0; c < units; ++c) {
    bool any = false;
    for (const auto& row : alive) any = any || row[static_cast<size_t>(c)] > T(0);
    alive_units += any ? 1 : 0;
  }
  stats[slot::kSaturated] = totals[0];
  stats[slot::kDerivativeSum] = totals[1];
  stats[slot::kInputSum] = totals[2];
  stats[slot::kInputSumSq] = totals[3];
  stats[slot::kOutputSum] = totals[4];
  stats[slot::kOutputSumSq] = totals[5];
  stats[slot::kNonFiniteOutput] = totals[6];
  stats[slot::kDeadUnits] = static_cast<double>(units - alive_units);
}

void activation_forward_kernel(const at::Tensor& input, const at::Tensor& output,
                               const ActivationParams& params, const UnitLayout& layout,
                               double* stats) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "bnlab_activation_forward", [&] {
    const auto* x = input.data_ptr<scalar_t>();
    auto* y = output.data_ptr<scalar_t>();
    with_op<scalar_t>(params, [&](const auto& op) {
      if (stats == nullptr) {
        forward_plain(x, y, input.numel(), op);
      } else {
        forward_with_stats(x, y, layout, op, stats);
      }
    });
  });
}

// ---- backward ---------------------------------------------------------------

void activation_backward_kernel(const at::Tensor& grad_output, const at::Tensor& saved,
                                const at::Tensor& grad_input, const ActivationParams& params,
                                double* stats) {
  AT_DISPATCH_FLOATING_TYPES(saved.scalar_type(), "bnlab_activation_backward", [&] {
    using T = scalar_t;
    using V = Vectorized<T>;
    constexpr int64_t W = V::size();
    const auto* gy = grad_output.data_ptr<T>();
    const auto* v = saved.data_ptr<T>();
    auto* gx = grad_input.data_ptr<T>();
    const int64_t n = saved.numel();
    const int num_threads = at::get_num_threads();
    std::vector<std::array<double, 3>> sums(static_cast<size_t>(num_threads), {0.0, 0.0, 0.0});
    with_op<T>(params, [&](const auto& op) {
      at::parallel_for(0, n, kGrainElements, [&](int64_t begin, int64_t end) {
        const V zero(T(0));
        const V one(T(1));
        V gy2(T(0)), gx2(T(0)), bad(T(0));
        int64_t since_flush = 0;
        auto& s = sums[static_cast<size_t>(at::get_thread_num())];
        auto flush = [&] {
          s[0] += horizontal_sum(gy2);
          s[1] += horizontal_sum(gx2);
          s[2] += horizontal_sum(bad);
          gy2 = gx2 = bad = zero;
        };
        for (int64_t i = begin; i < end; i += W) {
          const int64_t count = std::min<int64_t>(W, end - i);
          const V g = count == W ? V::loadu(gy + i) : V::loadu(gy + i, count);
          const V d = op.derivative(count == W ? V::loadu(v + i) : V::loadu(v + i, count));
          const V r = g * d;
          if (count == W) {
            r.store(gx + i);
          } else {
            r.store(gx + i, static_cast<int>(count));
          }
          if (stats != nullptr) {
            const V valid = lane_mask<T>(count);
            gy2 = gy2 + V::blendv(zero, g * g, valid);
            gx2 = gx2 + V::blendv(zero, r * r, valid);
            bad = bad + V::blendv(zero, one, non_finite_mask(r) & valid);
            if (++since_flush == 1024) {
              flush();
              since_flush = 0;
            }
          }
        }
        if (stats != nullptr) flush();
      });
    });
    if (stats != nullptr) {
      double totals[3] = {0, 0, 0};
      for (const auto& s : sums) {
        for (int k = 0; k < 3; ++k) totals[k] += s[static_cast<size_t>(k)];
      }
      stats[slot::kGradOutputSumSq] = totals[0];
      stats[slot::kGradInputSumSq] = totals[1];
      stats[slot::kNonFiniteGradInput] = totals[2];
    }
  });
}

}  // namespace

}  // inline namespace CPU_CAPABILITY

BNLAB_REGISTER_KERNEL(activation_forward_stub, activation_forward_kernel);
BNLAB_REGISTER_KERNEL(activation_backward_stub, activation_backward_kernel);

}  // namespace bnlab::kernels::cpu
