// bnlab::optim::SGD's fused update; compiled once per CPU capability.
#include "kernels/cpu/sgd_kernel.h"

#include "kernels/cpu/param_stats_ops.h"
#include "kernels/cpu/vec_helpers.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

namespace {

using at::vec::Vectorized;

constexpr int64_t kGrain = 32768;

// One parameter, elementwise, with the rounding of torch::optim::SGD's ops
// (each of its tensor ops rounds once; a + α·b is one fused multiply-add):
//   d   = g + λθ                                   (weight decay λ)
//   buf = d on the first step, else μ·buf + (1 − τ)·d   (momentum μ, dampening τ)
//   d   = d + μ·buf with Nesterov, else buf         (with momentum)
//   θ   = θ − η·d                                  (learning rate η)
//
// Weight decay and Nesterov are template flags, chosen once per parameter (see
// sgd_typed): as runtime flags, GCC re-tested them on every vector of the loop.
template <typename T, bool kMomentum, bool kFirst, bool kWeightDecay, bool kNesterov>
void sgd_one(const SgdJob& job, const SgdHyper& h) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  T* p = static_cast<T*>(job.param);
  const T* g = static_cast<const T*>(job.grad);
  T* buf = static_cast<T*>(job.momentum_buffer);
  const T lr = static_cast<T>(h.lr), mu = static_cast<T>(h.momentum);
  const T keep = static_cast<T>(1.0 - h.dampening), decay = static_cast<T>(h.weight_decay);
  const V lr_v(-lr), mu_v(mu), keep_v(keep), decay_v(decay);
  auto update = [&](V theta, V grad, V old_buf, V* new_buf) {
    V d = grad;
    if constexpr (kWeightDecay) d = at::vec::fmadd(theta, decay_v, grad);
    if constexpr (kMomentum) {
      const V b = kFirst ? d : at::vec::fmadd(d, keep_v, old_buf * mu_v);
      *new_buf = b;
      if constexpr (kNesterov) {
        d = at::vec::fmadd(b, mu_v, d);
      } else {
        d = b;
      }
    }
    return at::vec::fmadd(d, lr_v, theta);
  };
  if (job.stats != nullptr) {
    // The same update, also adding θ_after, θ_before and g to the statistics.
    parallel_pass_with_param_stats(p, g, job.numel, kGrain, job.stats, [&](int64_t i, int64_t lanes, auto& sums) {
      const V theta = load_lanes(p + i, lanes), grad = load_lanes(g + i, lanes);
      const V old_buf = kMomentum && !kFirst ? load_lanes(buf + i, lanes) : V();
      V new_buf;
      const V updated = update(theta, grad, old_buf, &new_buf);
      store_lanes(updated, p + i, lanes);
      if constexpr (kMomentum) store_lanes(new_buf, buf + i, lanes);
      sums.add(updated, theta, grad);
    });
    return;
  }
  at::parallel_for(0, job.numel, kGrain, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    V new_buf;
    for (; i + W <= end; i += W) {
      const V old_buf = kMomentum && !kFirst ? V::loadu(buf + i) : V();
      update(V::loadu(p + i), V::loadu(g + i), old_buf, &new_buf).store(p + i);
      if constexpr (kMomentum) new_buf.store(buf + i);
    }
    if (i < end) {
      const int64_t n = end - i;
      const V old_buf = kMomentum && !kFirst ? load_partial(buf + i, n) : V();
      store_partial(update(load_partial(p + i, n), load_partial(g + i, n), old_buf, &new_buf), p + i, n);
      if constexpr (kMomentum) store_partial(new_buf, buf + i, n);
    }
  });
}

template <typename T>
void sgd_typed(const SgdJob& job, const SgdHyper& h) {
  with_flag(h.weight_decay != 0.0, [&](auto decay) {
    constexpr bool kDecay = decltype(decay)::value;
    if (job.momentum_buffer == nullptr) {
      sgd_one<T, false, false, kDecay, false>(job, h);
      return;
    }
    with_flag(h.nesterov, [&](auto nesterov) {
      constexpr bool kNesterov = decltype(nesterov)::value;
      if (job.first_step) {
        sgd_one<T, true, true, kDecay, kNesterov>(job, h);
      } else {
        sgd_one<T, true, false, kDecay, kNesterov>(job, h);
      }
    });
  });
}

void sgd_step_kernel(const SgdJob& job, const SgdHyper& hyper) {
  if (job.is_double) {
    sgd_typed<double>(job, hyper);
  } else {
    sgd_typed<float>(job, hyper);
  }
}

}  // namespace

}  // inline namespace CPU_CAPABILITY

BNLAB_REGISTER_KERNEL(sgd_step_stub, sgd_step_kernel);

}  // namespace bnlab::kernels::cpu
