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

#if defined(CPU_CAPABILITY_AVX512)

inline at::vec::Vectorized<float> fast_tanh(const at::vec::Vectorized<float>& v) {
  namespace d = fast_tanh_detail;
  const __m512 x = v;
  const __m512 a = _mm512_abs_ps(x);
  const __m512 u = _mm512_mul_ps(a, a);
  __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(d::kQ4), u, _mm512_set1_ps(d::kQ3));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(d::kQ2));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(d::kQ1));
  q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(d::kQ0));
  const __m512 near_zero = _mm512_fmadd_ps(_mm512_mul_ps(a, u), q, a);

  const __m512 y = _mm512_min_ps(_mm512_add_ps(a, a), _mm512_set1_ps(d::kMaxDoubled));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(d::kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(d::kLn2High), y);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(d::kLn2Low), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(d::kR4), r, _mm512_set1_ps(d::kR3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(d::kR2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(d::kR1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(d::kR0));
  const __m512 one = _mm512_set1_ps(1.0f);
  p = _mm512_fmadd_ps(_mm512_mul_ps(r, r), p, _mm512_add_ps(r, one));
  const __m512 e = _mm512_scalef_ps(p, n);  // p·2^n
  const __m512 far = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));

  const __mmask16 small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(d::kPolynomialBelow), _CMP_LT_OQ);
  __m512 result = _mm512_mask_blend_ps(small, far, near_zero);
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
  result = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(result), sign));
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  return _mm512_mask_blend_ps(nan, result, x);
}

#elif defined(CPU_CAPABILITY_AVX2)

inline at::vec::Vectorized<float> fast_tanh(const at::vec::Vectorized<float>& v) {
  namespace d = fast_tanh_detail;
  const __m256 x = v;
  const __m256 sign_bit = _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN));
  const __m256 a = _mm256_andnot_ps(sign_bit, x);
  const __m256 u = _mm256_mul_ps(a, a);
  __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(d::kQ4), u, _mm256_set1_ps(d::kQ3));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(d::kQ2));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(d::kQ1));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(d::kQ0));
  const __m256 near_zero = _mm256_fmadd_ps(_mm256_mul_ps(a, u), q, a);

  const __m256 y = _mm256_min_ps(_mm256_add_ps(a, a), _mm256_set1_ps(d::kMaxDoubled));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(d::kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(d::kLn2High), y);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(d::kLn2Low), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(d::kR4), r, _mm256_set1_ps(d::kR3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(d::kR2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(d::kR1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(d::kR0));
  const __m256 one = _mm256_set1_ps(1.0f);
  p = _mm256_fmadd_ps(_mm256_mul_ps(r, r), p, _mm256_add_ps(r, one));
  // p·2^n: n (0 ≤ n ≤ 29 here, and p in [0.7, 1.5)) added to the exponent field.
  const __m256i scale = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  const __m256 e = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), scale));
  const __m256 far = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));

  const __m256 small = _mm256_cmp_ps(a, _mm256_set1_ps(d::kPolynomialBelow), _CMP_LT_OQ);
  __m256 result = _mm256_blendv_ps(far, near_zero, small);
  result = _mm256_or_ps(result, _mm256_and_ps(x, sign_bit));
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  return _mm256_blendv_ps(result, x, nan);
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
