// tanh on float lanes, written for speed at float accuracy (≤ 2 ulp).
//
// Vectorized<float>::tanh() calls Sleef's 1-ulp tanh, which evaluates exp in
// double-float arithmetic and costs about 8 cycles per element here: more than
// the rest of a BatchNorm + tanh layer together. Float needs less:
//
//   |x| < 0.625:  tanh x = x + x³·Q(x²)      Q of degree 4, fitted (weighted
//                                              least squares, iterated towards
//                                              minimax) to the relative error
//                                              of tanh on [0, 0.625]: 4.4e-9
//   |x| ≥ 0.625:  tanh x = 1 − 2 / (e^{2|x|} + 1), sign restored
//
// with e^y = 2^n · e^r, n = round(y·log2 e), r = y − n·ln 2 (ln 2 split in a
// short high part, exact when multiplied by n, and a low part) and
// e^r = 1 + r + r²·R(r), R of degree 4 fitted the same way on
// [−ln2/2, ln2/2] (relative error 3.1e-9). At 0.625 the subtraction loses at
// most 0.8 of a bit (2/(e^{2x}+1) ≤ 0.45); 2|x| is capped at 20, where
// 2/(e^20 + 1) is far below half an ulp of 1. NaN stays NaN (the result is
// blended back), ±Inf gives ±1, −0 gives −0.
//
// Float lanes on AVX2 and AVX-512; every other type and capability keeps
// Vectorized::tanh.
#pragma once

#include <ATen/cpu/vec/vec.h>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

namespace fast_tanh_detail {
// tanh x = x + x³·(q0 + q1·u + q2·u² + q3·u³ + q4·u⁴), u = x².
constexpr float kQ0 = -0.3333328068f;
constexpr float kQ1 = 0.1333144158f;
constexpr float kQ2 = -0.05373970047f;
constexpr float kQ3 = 0.02063904889f;
constexpr float kQ4 = -0.005704947282f;
// e^r = 1 + r + r²·(r0 + r1·r + r2·r² + r3·r³ + r4·r⁴).
constexpr float kR0 = 0.4999999404f;
constexpr float kR1 = 0.1666652113f;
constexpr float kR2 = 0.04166838899f;
constexpr float kR3 = 0.008368710987f;
constexpr float kR4 = 0.001381460461f;
constexpr float kLog2e = 1.44269504089f;
constexpr float kLn2High = 0.693359375f;  // 8 significant bits: n·kLn2High is exact for n < 2^16
constexpr float kLn2Low = -2.12194440e-4f;
constexpr float kPolynomialBelow = 0.625f;
constexpr float kMaxDoubled = 20.0f;
}  // namespace fast_tanh_detail

// p·2^n for float lanes, n integral: the one step Vectorized has no operation for.
#if defined(CPU_CAPABILITY_AVX512)
inline at::vec::Vectorized<float> times_power_of_two(const at::vec::Vectorized<float>& p,
                                                     const at::vec::Vectorized<float>& n) {
  return _mm512_scalef_ps(p, n);
}
#elif defined(CPU_CAPABILITY_AVX2)
// n added to the exponent field: here 0 ≤ n ≤ 29 and p is in [0.7, 1.5).
inline at::vec::Vectorized<float> times_power_of_two(const at::vec::Vectorized<float>& p,
                                                     const at::vec::Vectorized<float>& n) {
  const __m256i scale = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), scale));
}
#endif

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)

inline at::vec::Vectorized<float> fast_tanh(const at::vec::Vectorized<float>& x) {
  using V = at::vec::Vectorized<float>;
  namespace d = fast_tanh_detail;
  const V one(1.0f);
  const V a = x.abs();

  // |x| < 0.625: a + a³·Q(a²).
  const V u = a * a;
  V q = at::vec::fmadd(V(d::kQ4), u, V(d::kQ3));
  q = at::vec::fmadd(q, u, V(d::kQ2));
  q = at::vec::fmadd(q, u, V(d::kQ1));
  q = at::vec::fmadd(q, u, V(d::kQ0));
  const V near_zero = at::vec::fmadd(a * u, q, a);

  // Otherwise 1 − 2/(e^y + 1), y = min(2a, 20) (a NaN lane is blended back below).
  const V y = at::vec::clamp_max(a + a, V(d::kMaxDoubled));
  const V n = (y * V(d::kLog2e)).round();
  V r = at::vec::fmadd(n, V(-d::kLn2High), y);
  r = at::vec::fmadd(n, V(-d::kLn2Low), r);
  V p = at::vec::fmadd(V(d::kR4), r, V(d::kR3));
  p = at::vec::fmadd(p, r, V(d::kR2));
  p = at::vec::fmadd(p, r, V(d::kR1));
  p = at::vec::fmadd(p, r, V(d::kR0));
  p = at::vec::fmadd(r * r, p, r + one);
  const V far = one - V(2.0f) / (times_power_of_two(p, n) + one);

  const V magnitude = V::blendv(far, near_zero, a < V(d::kPolynomialBelow));
  const V result = magnitude | (x & V(-0.0f));  // x's sign bit
  return V::blendv(result, x, x != x);          // NaN stays NaN
}

#else

inline at::vec::Vectorized<float> fast_tanh(const at::vec::Vectorized<float>& v) { return v.tanh(); }

#endif

/// Other element types: Vectorized::tanh.
template <typename T>
inline at::vec::Vectorized<T> fast_tanh(const at::vec::Vectorized<T>& v) {
  return v.tanh();
}

}  // inline namespace CPU_CAPABILITY
}  // namespace bnlab::kernels::cpu
