// Vectorized fused reductions; compiled once per CPU capability.
#include "kernels/cpu/reduce_kernel.h"

#include "kernels/cpu/param_stats_ops.h"
#include "kernels/cpu/vec_helpers.h"
#include "kernels/reduce.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <array>
#include <atomic>
#include <cmath>
#include <vector>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

namespace {

using at::vec::Vectorized;

// Vector partial sums are flushed to double every kFlushVectors vectors, which
// bounds the float32 accumulation error to that many terms.
constexpr int64_t kFlushVectors = 256;
constexpr int64_t kGrain = 65536;

// Counts NaN/Inf in p[0..n): the rare path, taken only when a sum is non-finite.
template <typename T>
double count_nonfinite(const T* p, int64_t n) {
  double count = 0.0;
  for (int64_t i = 0; i < n; ++i) count += std::isfinite(p[i]) ? 0.0 : 1.0;
  return count;
}

// One pass over θ, g and the snapshot: the statistics of Δ = θ − snapshot,
// then snapshot ← θ.
template <typename T>
void parameter_stats_one(const T* p, const T* g, T* snap, int64_t n, double* out) {
  using V = Vectorized<T>;
  parallel_pass_with_param_stats(p, g, n, kGrain, out, [&](int64_t i, int64_t lanes, auto& sums) {
    const V theta = load_lanes(p + i, lanes);
    sums.add(theta, load_lanes<T>(snap + i, lanes), g != nullptr ? load_lanes(g + i, lanes) : V(T(0)));
    store_lanes(theta, snap + i, lanes);
  });
}

void parameter_stats_kernel(const ParameterStatsJob* jobs, int64_t count) {
  for (int64_t j = 0; j < count; ++j) {
    const auto& job = jobs[j];
    if (job.is_double) {
      parameter_stats_one(static_cast<const double*>(job.param), static_cast<const double*>(job.grad),
                          static_cast<double*>(job.snapshot), job.numel, job.out);
    } else {
      parameter_stats_one(static_cast<const float*>(job.param), static_cast<const float*>(job.grad),
                          static_cast<float*>(job.snapshot), job.numel, job.out);
    }
  }
}

void sum_squares_kernel(const at::Tensor& t, double* out) {
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "bnlab_sum_squares", [&] {
    using T = scalar_t;
    using V = Vectorized<T>;
    constexpr int64_t W = V::size();
    const T* x = t.data_ptr<T>();
    const int64_t n = t.numel();
    std::array<double, 64> partial_small{};
    std::vector<double> partial_large;
    const int threads = at::get_num_threads();
    double* partial = partial_small.data();
    if (threads > 64) {
      partial_large.assign(static_cast<size_t>(threads), 0.0);
      partial = partial_large.data();
    }
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      double& acc = partial[at::get_thread_num()];
      V s2(T(0));
      int64_t vectors = 0;
      int64_t i = begin;
      for (; i + W <= end; i += W) {
        const V v = V::loadu(x + i);
        s2 = s2 + v * v;
        if (++vectors == kFlushVectors) {
          acc += horizontal_sum(s2);
          s2 = V(T(0));
          vectors = 0;
        }
      }
      if (i < end) {
        const V v = load_partial(x + i, end - i);
        s2 = s2 + v * v;
      }
      acc += horizontal_sum(s2);
    });
    double total = 0.0;
    for (int k = 0; k < threads; ++k) total += partial[k];
    out[0] = total;
    out[1] = std::isfinite(total) ? 0.0 : count_nonfinite(x, n);
  });
}

int parallel_width_kernel(int64_t n) {
  std::atomic<int> widest{0};
  at::parallel_for(0, n, 1, [&](int64_t, int64_t) {
    const int width = at::get_thread_num() + 1;
    int seen = widest.load();
    while (width > seen && !widest.compare_exchange_weak(seen, width)) {
    }
  });
  return widest.load();
}

}  // namespace

}  // inline namespace CPU_CAPABILITY

BNLAB_REGISTER_KERNEL(parameter_stats_stub, parameter_stats_kernel);
BNLAB_REGISTER_KERNEL(sum_squares_stub, sum_squares_kernel);
BNLAB_REGISTER_KERNEL(parallel_width_stub, parallel_width_kernel);

}  // namespace bnlab::kernels::cpu
