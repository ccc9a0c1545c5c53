// Vectorized fused reductions; compiled once per CPU capability.
#include "kernels/cpu/reduce_kernel.h"

#include "kernels/cpu/vec_helpers.h"
#include "kernels/reduce.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <array>
#include <vector>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

namespace {

using at::vec::Vectorized;
namespace ps = param_stat;

// Vector partial sums are flushed to double every kFlushVectors vectors, which
// bounds the float32 accumulation error to that many terms.
constexpr int64_t kFlushVectors = 256;
constexpr int64_t kGrain = 65536;

void parameter_stats_kernel(const at::Tensor& param, const at::Tensor& grad,
                            const at::Tensor& snapshot, double* out) {
  AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "bnlab_parameter_stats", [&] {
    using T = scalar_t;
    using V = Vectorized<T>;
    constexpr int64_t W = V::size();
    const T* p = param.data_ptr<T>();
    const T* g = grad.defined() ? grad.data_ptr<T>() : nullptr;
    T* snap = snapshot.data_ptr<T>();
    const int64_t n = param.numel();
    std::vector<std::array<double, ps::kCount>> partial(static_cast<size_t>(at::get_num_threads()));
    for (auto& a : partial) a.fill(0.0);
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      auto& acc = partial[static_cast<size_t>(at::get_thread_num())];
      const V zero(T(0));
      const V one(T(1));
      V s(T(0)), s2(T(0)), gs(T(0)), gs2(T(0)), ds(T(0)), ds2(T(0)), bad_p(T(0)), bad_g(T(0));
      auto flush = [&] {
        acc[ps::kSum] += horizontal_sum(s);
        acc[ps::kSumSq] += horizontal_sum(s2);
        acc[ps::kGradSum] += horizontal_sum(gs);
        acc[ps::kGradSumSq] += horizontal_sum(gs2);
        acc[ps::kDeltaSum] += horizontal_sum(ds);
        acc[ps::kDeltaSumSq] += horizontal_sum(ds2);
        acc[ps::kNonFiniteParam] += horizontal_sum(bad_p);
        acc[ps::kNonFiniteGrad] += horizontal_sum(bad_g);
        s = s2 = gs = gs2 = ds = ds2 = bad_p = bad_g = zero;
      };
      int64_t vectors = 0;
      for (int64_t i = begin; i < end; i += W) {
        const int64_t count = std::min<int64_t>(W, end - i);
        const bool full = count == W;
        const V valid = lane_mask<T>(count);
        const V theta = full ? V::loadu(p + i) : V::loadu(p + i, count);
        const V old = full ? V::loadu(snap + i) : V::loadu(snap + i, count);
        const V delta = theta - old;
        s = s + theta;
        s2 = s2 + theta * theta;
        ds = ds + delta;
        ds2 = ds2 + delta * delta;
        bad_p = bad_p + V::blendv(zero, one, non_finite_mask(theta) & valid);
        if (g != nullptr) {
          const V gv = full ? V::loadu(g + i) : V::loadu(g + i, count);
          gs = gs + gv;
          gs2 = gs2 + gv * gv;
          bad_g = bad_g + V::blendv(zero, one, non_finite_mask(gv) & valid);
        }
        if (full) {
          theta.store(snap + i);
        } else {
          theta.store(snap + i, static_cast<int>(count));
        }
        if (++vectors == kFlushVectors) {
          flush();
          vectors = 0;
        }
      }
      flush();
    });
    for (int k = 0; k < ps::kCount; ++k) {
      double total = 0.0;
      for (const auto& a : partial) total += a[static_cast<size_t>(k)];
      out[k] = total;
    }
  });
}

void sum_squares_kernel(const at::Tensor& t, double* out) {
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "bnlab_sum_squares", [&] {
    using T = scalar_t;
    using V = Vectorized<T>;
    constexpr int64_t W = V::size();
    const T* x = t.data_ptr<T>();
    const int64_t n = t.numel();
    std::vector<std::array<double, 2>> partial(static_cast<size_t>(at::get_num_threads()), {0.0, 0.0});
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      auto& acc = partial[static_cast<size_t>(at::get_thread_num())];
      const V zero(T(0));
      const V one(T(1));
      V s2(T(0)), bad(T(0));
      int64_t vectors = 0;
      for (int64_t i = begin; i < end; i += W) {
        const int64_t count = std::min<int64_t>(W, end - i);
        const V v = count == W ? V::loadu(x + i) : V::loadu(x + i, count);
        s2 = s2 + v * v;
        bad = bad + V::blendv(zero, one, non_finite_mask(v) & lane_mask<T>(count));
        if (++vectors == kFlushVectors) {
          acc[0] += horizontal_sum(s2);
          acc[1] += horizontal_sum(bad);
          s2 = bad = zero;
          vectors = 0;
        }
      }
      acc[0] += horizontal_sum(s2);
      acc[1] += horizontal_sum(bad);
    });
    out[0] = out[1] = 0.0;
    for (const auto& a : partial) {
      out[0] += a[0];
      out[1] += a[1];
    }
  });
}

}  // namespace

}  // inline namespace CPU_CAPABILITY

BNLAB_REGISTER_KERNEL(parameter_stats_stub, parameter_stats_kernel);
BNLAB_REGISTER_KERNEL(sum_squares_stub, sum_squares_kernel);

}  // namespace bnlab::kernels::cpu
