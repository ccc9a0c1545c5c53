// Small helpers on at::vec::Vectorized used by bnlab's CPU kernels. Included
// only from kernel sources (compiled per CPU capability).
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

/// A mask selecting the first `count` lanes.
template <typename T>
inline at::vec::Vectorized<T> lane_mask(int64_t count) {
  using V = at::vec::Vectorized<T>;
  if (count >= V::size()) return V(T(0)) == V(T(0));
  return V::arange(T(0), T(1)) < V(static_cast<T>(count));
}

/// Lanes holding NaN or ±Inf. (v − v is 0 for finite v and NaN otherwise; the
/// ordered == is false on NaN in every capability.)
template <typename T>
inline at::vec::Vectorized<T> non_finite_mask(const at::vec::Vectorized<T>& v) {
  using V = at::vec::Vectorized<T>;
  const V zero(T(0));
  return ((v - v) == zero) ^ (zero == zero);
}

/// Σ of the lanes, in double.
template <typename T>
inline double horizontal_sum(const at::vec::Vectorized<T>& v) {
  using V = at::vec::Vectorized<T>;
  T lanes[V::size()];
  v.store(lanes);
  double s = 0.0;
  for (int64_t i = 0; i < V::size(); ++i) s += static_cast<double>(lanes[i]);
  return s;
}

/// min of the lanes.
template <typename T>
inline T horizontal_min(const at::vec::Vectorized<T>& v) {
  using V = at::vec::Vectorized<T>;
  T lanes[V::size()];
  v.store(lanes);
  return *std::min_element(lanes, lanes + V::size());
}

/// max of the lanes.
template <typename T>
inline T horizontal_max(const at::vec::Vectorized<T>& v) {
  using V = at::vec::Vectorized<T>;
  T lanes[V::size()];
  v.store(lanes);
  return *std::max_element(lanes, lanes + V::size());
}

}  // inline namespace CPU_CAPABILITY
}  // namespace bnlab::kernels::cpu
