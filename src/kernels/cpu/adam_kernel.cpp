// bnlab::optim::Adam's and AdamW's fused update; compiled once per CPU capability.
#include "kernels/cpu/adam_kernel.h"

#include "kernels/cpu/param_stats_ops.h"
#include "kernels/cpu/vec_helpers.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

namespace {

using at::vec::Vectorized;

constexpr int64_t kGrain = 32768;

// One parameter, elementwise, in the order of torch::optim::Adam's (AdamW's) ops:
//   θ ← θ·(1 − ηλ)                      (AdamW's decoupled decay)
//   g ← g + λθ                          (Adam's L2 decay)
//   m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;  v̂ ← max(v̂, v) with AMSGrad
//   θ ← θ − s·m / (√v / √(1 − β₂ᵗ) + ε),  s = η / (1 − β₁ᵗ)
template <typename T, bool kAmsgrad>
void adam_one(const AdamJob& job) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  T* p = static_cast<T*>(job.param);
  const T* g = static_cast<const T*>(job.grad);
  T* m = static_cast<T*>(job.exp_avg);
  T* v = static_cast<T*>(job.exp_avg_sq);
  T* vmax = static_cast<T*>(job.max_exp_avg_sq);
  const bool l2 = job.weight_decay != 0.0, decoupled = job.decoupled_decay != 1.0;
  const V decay(static_cast<T>(job.weight_decay)), scale(static_cast<T>(job.decoupled_decay));
  const V b1(static_cast<T>(job.beta1)), b2(static_cast<T>(job.beta2));
  const V keep1(static_cast<T>(1.0 - job.beta1)), keep2(static_cast<T>(1.0 - job.beta2));
  const V root_bc2(static_cast<T>(job.sqrt_bias_correction2)), eps(static_cast<T>(job.eps));
  const V neg_step(static_cast<T>(-job.step_size));
  // One vector of lanes; returns θ and writes the moments.
  auto update = [&](V theta, V grad, V& mv, V& vv, V& vmaxv) {
    if (decoupled) theta = theta * scale;
    if (l2) grad = at::vec::fmadd(theta, decay, grad);
    mv = at::vec::fmadd(grad, keep1, mv * b1);
    vv = vv * b2 + keep2 * grad * grad;
    V second = vv;
    if constexpr (kAmsgrad) {
      vmaxv = at::vec::maximum(vmaxv, vv);
      second = vmaxv;
    }
    const V denom = second.sqrt() / root_bc2 + eps;
    return neg_step * mv / denom + theta;
  };
  if (job.stats != nullptr) {
    // The same update, also adding θ_after, θ_before and g to the statistics.
    parallel_pass_with_param_stats(p, g, job.numel, kGrain, job.stats, [&](int64_t i, int64_t lanes, auto& sums) {
      const V theta = load_lanes(p + i, lanes), grad = load_lanes(g + i, lanes);
      V mv = load_lanes(m + i, lanes), vv = load_lanes(v + i, lanes), vmaxv;
      if constexpr (kAmsgrad) vmaxv = load_lanes(vmax + i, lanes);
      const V updated = update(theta, grad, mv, vv, vmaxv);
      store_lanes(updated, p + i, lanes);
      store_lanes(mv, m + i, lanes);
      store_lanes(vv, v + i, lanes);
      if constexpr (kAmsgrad) store_lanes(vmaxv, vmax + i, lanes);
      sums.add(updated, theta, grad);
    });
    return;
  }
  at::parallel_for(0, job.numel, kGrain, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + W <= end; i += W) {
      V mv = V::loadu(m + i), vv = V::loadu(v + i), vmaxv;
      if constexpr (kAmsgrad) vmaxv = V::loadu(vmax + i);
      update(V::loadu(p + i), V::loadu(g + i), mv, vv, vmaxv).store(p + i);
      mv.store(m + i);
      vv.store(v + i);
      if constexpr (kAmsgrad) vmaxv.store(vmax + i);
    }
    if (i < end) {
      const int64_t n = end - i;
      V mv = load_partial(m + i, n), vv = load_partial(v + i, n), vmaxv;
      if constexpr (kAmsgrad) vmaxv = load_partial(vmax + i, n);
      store_partial(update(load_partial(p + i, n), load_partial(g + i, n), mv, vv, vmaxv), p + i, n);
      store_partial(mv, m + i, n);
      store_partial(vv, v + i, n);
      if constexpr (kAmsgrad) store_partial(vmaxv, vmax + i, n);
    }
  });
}

void adam_step_kernel(const AdamJob& job) {
  const bool amsgrad = job.max_exp_avg_sq != nullptr;
  if (job.is_double) {
    amsgrad ? adam_one<double, true>(job) : adam_one<double, false>(job);
  } else {
    amsgrad ? adam_one<float, true>(job) : adam_one<float, false>(job);
  }
}

}  // namespace

}  // inline namespace CPU_CAPABILITY

BNLAB_REGISTER_KERNEL(adam_step_stub, adam_step_kernel);

}  // namespace bnlab::kernels::cpu
