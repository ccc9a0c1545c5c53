// Small helpers on at::vec::Vectorized used by bnlab's CPU kernels. Included
// only from kernel sources (compiled per CPU capability).
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/macros/Macros.h>

#include <type_traits>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

/// Calls f(std::true_type{}) or f(std::false_type{}): a runtime flag turned
/// into a compile-time one once, outside a kernel's loop, where `if constexpr`
/// on it then leaves no test per vector.
template <typename F>
C10_ALWAYS_INLINE void with_flag(bool flag, const F& f) {
  if (flag) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

/// A mask selecting the first `count` lanes.
template <typename T>
inline at::vec::Vectorized<T> lane_mask(int64_t count) {
  using V = at::vec::Vectorized<T>;
  if (count >= V::size()) return V(T(0)) == V(T(0));
  return V::arange(T(0), T(1)) < V(static_cast<T>(count));
}

/// The first `count` (0 ≤ count ≤ lanes) elements at p, the other lanes zero.
/// Vectorized<T>::loadu(p, count) does this through a zeroed stack buffer and
/// an out-of-line memcpy, which also spills every live vector register around
/// the call; on AVX-512 and AVX2 a masked load does it in one instruction and
/// never touches memory past p + count.
template <typename T>
inline at::vec::Vectorized<T> load_partial(const T* p, int64_t count) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1U << count) - 1U), p);
  } else if constexpr (std::is_same_v<T, double>) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1U << count) - 1U), p);
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lanes));
  } else if constexpr (std::is_same_v<T, double>) {
    const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(count), lanes));
  }
#endif
  return at::vec::Vectorized<T>::loadu(p, count);
}

/// Stores the first `count` (0 ≤ count ≤ lanes) lanes of v at p, touching
/// nothing past p + count (a masked store where the capability has one).
template <typename T>
inline void store_partial(const at::vec::Vectorized<T>& v, T* p, int64_t count) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1U << count) - 1U), v);
    return;
  } else if constexpr (std::is_same_v<T, double>) {
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1U << count) - 1U), v);
    return;
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lanes), v);
    return;
  } else if constexpr (std::is_same_v<T, double>) {
    const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
    _mm256_maskstore_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(count), lanes), v);
    return;
  }
#endif
  v.store(p, static_cast<int>(count));
}

/// Stores v at p, which must be aligned to sizeof(Vectorized<T>), bypassing
/// the caches where the capability has a non-temporal store (a plain store
/// otherwise). Callers end their run of such stores with stream_fence().
template <typename T>
inline void store_stream(const at::vec::Vectorized<T>& v, T* p) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    _mm512_stream_ps(p, v);
    return;
  } else if constexpr (std::is_same_v<T, double>) {
    _mm512_stream_pd(p, v);
    return;
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    _mm256_stream_ps(p, v);
    return;
  } else if constexpr (std::is_same_v<T, double>) {
    _mm256_stream_pd(p, v);
    return;
  }
#endif
  v.store(p);
}

/// Orders this thread's non-temporal stores before its later stores (they are
/// weakly ordered), so whoever synchronizes with it next sees them.
inline void stream_fence() {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  _mm_sfence();
#endif
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
