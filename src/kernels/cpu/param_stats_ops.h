// A parameter's statistics (kernels::param_stat slots), accumulated alongside
// a pass over the parameter: the recorder's own pass and the fused optimizers'
// updates share this. Included only from kernel sources (compiled per CPU
// capability).
#pragma once

#include "kernels/cpu/per_thread_sums.h"
#include "kernels/cpu/vec_helpers.h"
#include "kernels/reduce.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/macros/Macros.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

/// Vector partial sums are flushed to double every this many vectors, which
/// bounds the float32 accumulation error to that many terms.
inline constexpr int64_t kParamStatsFlushVectors = 256;

/// Σθ, Σθ², Σg, Σg², ΣΔ, ΣΔ² (Δ = θ − θ_before) as vector sums. Used as a
/// local that is never addressed, so that its sums stay in registers.
template <typename T>
struct ParamVectorSums {
  using V = at::vec::Vectorized<T>;
  V s{T(0)}, s2{T(0)}, gs{T(0)}, gs2{T(0)}, ds{T(0)}, ds2{T(0)};

  C10_ALWAYS_INLINE void add(V theta, V before, V grad) {
    const V delta = theta - before;
    s = s + theta;
    s2 = at::vec::fmadd(theta, theta, s2);
    gs = gs + grad;
    gs2 = at::vec::fmadd(grad, grad, gs2);
    ds = ds + delta;
    ds2 = at::vec::fmadd(delta, delta, ds2);
  }
  /// Adds the sums to acc[0..6) in double and restarts them.
  C10_ALWAYS_INLINE void flush_into(double* acc) {
    acc[0] += horizontal_sum(s);
    acc[1] += horizontal_sum(s2);
    acc[2] += horizontal_sum(gs);
    acc[3] += horizontal_sum(gs2);
    acc[4] += horizontal_sum(ds);
    acc[5] += horizontal_sum(ds2);
    s = s2 = gs = gs2 = ds = ds2 = V(T(0));
  }
};

/// Walks the vectors of [begin, end), calling step(i, lanes, sums) for the
/// vector at i (lanes = W except for a partial last one), which processes it
/// and adds its θ, θ_before and g to `sums`. Consecutive vectors alternate
/// between two sets of sums: each sum is a chain of dependent adds, and with
/// one set a pass waits on their latency instead of on memory.
template <typename T, typename Step>
C10_ALWAYS_INLINE void accumulate_param_stats(int64_t begin, int64_t end, double* acc, const Step& step) {
  constexpr int64_t W = at::vec::Vectorized<T>::size();
  ParamVectorSums<T> a, b;
  int64_t pairs = 0;
  int64_t i = begin;
  for (; i + 2 * W <= end; i += 2 * W) {
    step(i, W, a);
    step(i + W, W, b);
    if (++pairs == kParamStatsFlushVectors / 2) {
      a.flush_into(acc);
      b.flush_into(acc);
      pairs = 0;
    }
  }
  for (; i < end; i += W) step(i, std::min<int64_t>(W, end - i), a);
  a.flush_into(acc);
  b.flush_into(acc);
}

/// A vector of `lanes` values from p: the missing lanes are zero, which adds
/// nothing to any sum.
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> load_lanes(const T* p, int64_t lanes) {
  return lanes == at::vec::Vectorized<T>::size() ? at::vec::Vectorized<T>::loadu(p) : load_partial(p, lanes);
}

template <typename T>
C10_ALWAYS_INLINE void store_lanes(const at::vec::Vectorized<T>& v, T* p, int64_t lanes) {
  if (lanes == at::vec::Vectorized<T>::size()) {
    v.store(p);
  } else {
    store_partial(v, p, lanes);
  }
}

/// The per-thread double sums of one parallel pass, combined into a
/// param_stat row at the end.
class ParamStatsPartials {
 public:
  static constexpr int kSums = 6;  // Σθ, Σθ², Σg, Σg², ΣΔ, ΣΔ²

  ParamStatsPartials() : sums_(at::get_num_threads()) {}

  /// This thread's six sums (call inside the parallel region).
  double* of_this_thread() { return sums_[at::get_thread_num()].data(); }

  /// Writes the totals into out's sum slots, and the NaN/Inf counts of θ (and
  /// of g, when given) — counted only when their sums say there are some.
  template <typename T>
  void finish(const T* theta, const T* grad, int64_t n, double* out) {
    const std::array<double, kSums> totals = sums_.total();
    std::copy(totals.begin(), totals.end(), out);
    out[param_stat::kNonFiniteParam] = std::isfinite(out[param_stat::kSumSq]) ? 0.0 : count_nonfinite(theta, n);
    out[param_stat::kNonFiniteGrad] =
        grad != nullptr && !std::isfinite(out[param_stat::kGradSumSq]) ? count_nonfinite(grad, n) : 0.0;
  }

 private:
  template <typename T>
  static double count_nonfinite(const T* p, int64_t n) {
    double count = 0.0;
    for (int64_t i = 0; i < n; ++i) count += std::isfinite(p[i]) ? 0.0 : 1.0;
    return count;
  }

  PerThreadSums<kSums> sums_;
};

/// A parallel pass over n values whose step (as for accumulate_param_stats)
/// also adds to the statistics; writes the param_stat row `out` at the end.
template <typename T, typename Step>
void parallel_pass_with_param_stats(const T* theta, const T* grad, int64_t n, int64_t grain, double* out,
                                    const Step& step) {
  ParamStatsPartials partials;
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    accumulate_param_stats<T>(begin, end, partials.of_this_thread(), step);
  });
  partials.finish(theta, grad, n, out);
}

}  // inline namespace CPU_CAPABILITY
}  // namespace bnlab::kernels::cpu
