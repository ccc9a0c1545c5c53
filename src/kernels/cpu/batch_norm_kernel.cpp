// Vectorized CPU batch-norm kernels; compiled once per CPU capability.
#include "kernels/cpu/batch_norm_kernel.h"

#include "kernels/cpu/batch_norm_helpers.h"
#include "kernels/cpu/streaming_store.h"
#include "kernels/cpu/vec_helpers.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

namespace {

using at::vec::Vectorized;

// out = f(i, k) over a span of `len` values: whole vectors, then a masked
// tail; f returns the vector at offset i from its first k lanes (k is
// WholeBlock<T> except at the tail, where it is an int64_t). Returns Σ out²
// over the span when wanted. With kStream, out must be vector-aligned and the
// whole vectors go out as non-temporal stores (store_stream; the caller
// fences).
template <bool kStream = false, typename T, typename F>
double map_span(T* out, int64_t len, bool want_sq, const F& f) {
  using V = Vectorized<T>;
  V sq(T(0));
  int64_t i = 0;
  for (; i + V::size() <= len; i += V::size()) {
    const V r = f(i, WholeBlock<T>{});
    if constexpr (kStream) {
      store_stream(r, out + i);
    } else {
      r.store(out + i);
    }
    if (want_sq) sq = at::vec::fmadd(r, r, sq);
  }
  if (i < len) {
    const int64_t count = len - i;
    const V r = f(i, count);
    store_partial(r, out + i, count);
    if (want_sq) {
      const V rm = V::blendv(V(T(0)), r, lane_mask<T>(count));
      sq = at::vec::fmadd(rm, rm, sq);
    }
  }
  return want_sq ? horizontal_sum(sq) : 0.0;
}

// y = (x − mu)·scale + shift over a span; returns Σ y² when wanted.
template <typename T>
double span_transform(const T* x, T* y, int64_t len, T mu, T scale, T shift, bool want_y2) {
  using V = Vectorized<T>;
  const V m(mu), s(scale), b(shift);
  return map_span(y, len, want_y2, [&](int64_t i, auto k) { return at::vec::fmadd(load(x + i, k) - m, s, b); });
}

// span_transform writing y with non-temporal stores (see streaming_store.h):
// plain stores up to y's first vector-aligned address and for the masked
// tail, the same fused multiply-add everywhere, so the values are those of
// span_transform.
template <typename T>
double span_transform_streaming(const T* x, T* y, int64_t len, T mu, T scale, T shift, bool want_y2) {
  using V = Vectorized<T>;
  constexpr auto kAlign = static_cast<uintptr_t>(sizeof(V));
  const auto misalignment = reinterpret_cast<uintptr_t>(y) % kAlign;
  if (misalignment % sizeof(T) != 0) return span_transform(x, y, len, mu, scale, shift, want_y2);
  const int64_t head =
      misalignment == 0 ? 0 : std::min<int64_t>(len, static_cast<int64_t>((kAlign - misalignment) / sizeof(T)));
  const double head_sq = head > 0 ? span_transform(x, y, head, mu, scale, shift, want_y2) : 0.0;
  const V m(mu), s(scale), b(shift);
  const T* xb = x + head;
  return head_sq + map_span<true>(y + head, len - head, want_y2,
                                  [&](int64_t i, auto k) { return at::vec::fmadd(load(xb + i, k) - m, s, b); });
}

// Σ g and Σ g·(x − mu) over a span.
template <typename T>
void span_reduce(const T* g, const T* x, int64_t len, T mu, double& sum_dy, double& sum_dy_xmu, double* g2) {
  using V = Vectorized<T>;
  const V m(mu);
  V a1(T(0)), a2(T(0)), a3(T(0));
  int64_t i = 0;
  for (; i + V::size() <= len; i += V::size()) {
    const V gv = V::loadu(g + i);
    a1 = a1 + gv;
    a2 = at::vec::fmadd(gv, V::loadu(x + i) - m, a2);
    if (g2 != nullptr) a3 = at::vec::fmadd(gv, gv, a3);
  }
  if (i < len) {
    const int64_t count = len - i;
    const V gv = load_partial(g + i, count);  // zero lanes contribute nothing below
    a1 = a1 + gv;
    a2 = at::vec::fmadd(gv, load_partial(x + i, count) - m, a2);
    if (g2 != nullptr) a3 = at::vec::fmadd(gv, gv, a3);
  }
  sum_dy += horizontal_sum(a1);
  sum_dy_xmu += horizontal_sum(a2);
  if (g2 != nullptr) *g2 += horizontal_sum(a3);
}

// dx = g·a − (x − mu)·b − c over a span; returns Σ dx² when wanted.
template <typename T>
double span_backward(const T* g, const T* x, T* dx, int64_t len, T mu, T a, T b, T c, bool want_dx2) {
  using V = Vectorized<T>;
  const V m(mu), av(a), bv(b), cv(c);
  return map_span(dx, len, want_dx2,
                  [&](int64_t i, auto k) { return load(g + i, k) * av - ((load(x + i, k) - m) * bv + cv); });
}

// Eval backward in one pass: dx = g·a and the two sums.
template <typename T>
double span_backward_eval(const T* g, const T* x, T* dx, int64_t len, T mu, T a, double& sum_dy,
                          double& sum_dy_xmu, double* g2, bool want_dx2) {
  using V = Vectorized<T>;
  const V m(mu), av(a);
  V a1(T(0)), a2(T(0)), a3(T(0)), d2(T(0));
  int64_t i = 0;
  for (; i + V::size() <= len; i += V::size()) {
    const V gv = V::loadu(g + i);
    a1 = a1 + gv;
    a2 = at::vec::fmadd(gv, V::loadu(x + i) - m, a2);
    if (g2 != nullptr) a3 = at::vec::fmadd(gv, gv, a3);
    if (dx != nullptr) {
      const V r = gv * av;
      r.store(dx + i);
      if (want_dx2) d2 = at::vec::fmadd(r, r, d2);
    }
  }
  if (i < len) {
    const int64_t count = len - i;
    const V gv = load_partial(g + i, count);
    a1 = a1 + gv;
    a2 = at::vec::fmadd(gv, load_partial(x + i, count) - m, a2);
    if (g2 != nullptr) a3 = at::vec::fmadd(gv, gv, a3);
    if (dx != nullptr) {
      const V r = gv * av;  // zero in the missing lanes
      store_partial(r, dx + i, count);
      if (want_dx2) d2 = at::vec::fmadd(r, r, d2);
    }
  }
  sum_dy += horizontal_sum(a1);
  sum_dy_xmu += horizontal_sum(a2);
  if (g2 != nullptr) *g2 += horizontal_sum(a3);
  return want_dx2 ? horizontal_sum(d2) : 0.0;
}

// y[r, c] = (x[r, c] − mu[c])·scale[c] + shift[c] for rows [r0, r1); returns Σy² when asked.
template <typename T>
double rows_transform(const T* x, T* y, int64_t r0, int64_t r1, int64_t C, const T* mu, const T* scale,
                      const T* shift, bool want_y2) {
  using V = Vectorized<T>;
  V y2(T(0));
  auto run = [&](auto want_y2_c) {
    rows_elementwise<T>(r0, r1, C, [&](int64_t i, int64_t c, auto k) {
      // Missing lanes load zero coefficients, so they give y = 0 (nothing added to Σy²).
      const V v = at::vec::fmadd(load(x + i, k) - load(mu + c, k), load(scale + c, k), load(shift + c, k));
      store(v, y + i, k);
      if constexpr (decltype(want_y2_c)::value) y2 = at::vec::fmadd(v, v, y2);
    });
  };
  with_flag(want_y2, run);
  return want_y2 ? horizontal_sum(y2) : 0.0;
}

template <typename T>
void minor_transform(const T* x, T* y, const BatchNormLayout& L, const ChannelVector<T>& mu,
                     const ChannelVector<T>& scale, const ChannelVector<T>& shift, double* sum_y2) {
  const int64_t C = L.channels;
  ThreadSums y2(at::get_num_threads());
  const int64_t grain = std::max<int64_t>(1, kGrainElements / C);
  at::parallel_for(0, L.outer, grain, [&](int64_t begin, int64_t end) {
    y2() += rows_transform(x, y, begin, end, C, mu.data(), scale.data(), shift.data(), sum_y2 != nullptr);
  });
  if (sum_y2 != nullptr) *sum_y2 = y2.total();
}

// ---- the kernels --------------------------------------------------------------

template <typename T>
void forward_train_impl(const at::Tensor& xt, const at::Tensor& yt, const BatchNormLayout& L, const at::Tensor& weight,
                        const at::Tensor& bias, double eps, double* mean, double* var, double* sum_y2) {
  const T* x = xt.data_ptr<T>();
  T* y = yt.data_ptr<T>();
  const int64_t C = L.channels;
  const ChannelParam gamma(weight, 1.0), beta(bias, 0.0);
  if (L.channel_minor) {
    std::vector<Moments> moments;
    minor_moments(x, L, moments);
    ChannelVector<T> mu(static_cast<size_t>(C)), scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      const auto k = static_cast<size_t>(c);
      mean[c] = moments[k].mean;
      var[c] = moments[k].n > 0 ? moments[k].m2 / moments[k].n : 0.0;
      mu[k] = static_cast<T>(mean[c]);
      scale[k] = static_cast<T>(gamma[c] / std::sqrt(var[c] + eps));
      shift[k] = static_cast<T>(beta[c]);
    }
    minor_transform(x, y, L, mu, scale, shift, sum_y2);
    return;
  }
  // Channel-major: each channel's statistics, then its normalization while
  // its data is still in cache.
  ThreadSums y2(at::get_num_threads());
  const int64_t per_channel = L.outer * L.inner;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(per_channel, 1));
  at::parallel_for(0, C, grain, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      Moments m;
      for (int64_t n = 0; n < L.outer; ++n) span_moments(x + (n * C + c) * L.inner, L.inner, m);
      mean[c] = m.mean;
      var[c] = m.n > 0 ? m.m2 / m.n : 0.0;
      const T mu = static_cast<T>(mean[c]);
      const T scale = static_cast<T>(gamma[c] / std::sqrt(var[c] + eps));
      const T shift = static_cast<T>(beta[c]);
      double local = 0;
      for (int64_t n = 0; n < L.outer; ++n) {
        const int64_t off = (n * C + c) * L.inner;
        local += span_transform(x + off, y + off, L.inner, mu, scale, shift, sum_y2 != nullptr);
      }
      y2() += local;
    }
  });
  if (sum_y2 != nullptr) *sum_y2 = y2.total();
}

void forward_train_kernel(const at::Tensor& x, const at::Tensor& y, const BatchNormLayout& layout,
                          const at::Tensor& weight, const at::Tensor& bias, double eps, double* mean, double* var,
                          double* sum_y2) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bnlab_batch_norm_forward_train", [&] {
    forward_train_impl<scalar_t>(x, y, layout, weight, bias, eps, mean, var, sum_y2);
  });
}

void stats_kernel(const at::Tensor& xt, const BatchNormLayout& L, double* mean, double* var) {
  AT_DISPATCH_FLOATING_TYPES(xt.scalar_type(), "bnlab_batch_norm_stats", [&] {
    using T = scalar_t;
    const T* x = xt.data_ptr<T>();
    const int64_t C = L.channels;
    if (L.channel_minor) {
      std::vector<Moments> moments;
      minor_moments(x, L, moments);
      for (int64_t c = 0; c < C; ++c) {
        mean[c] = moments[static_cast<size_t>(c)].mean;
        var[c] = moments[static_cast<size_t>(c)].n > 0 ? moments[static_cast<size_t>(c)].m2 / moments[static_cast<size_t>(c)].n : 0.0;
      }
      return;
    }
    const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(L.outer * L.inner, 1));
    at::parallel_for(0, C, grain, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        Moments m;
        for (int64_t n = 0; n < L.outer; ++n) span_moments(x + (n * C + c) * L.inner, L.inner, m);
        mean[c] = m.mean;
        var[c] = m.n > 0 ? m.m2 / m.n : 0.0;
      }
    });
  });
}

void transform_kernel(const at::Tensor& xt, const at::Tensor& yt, const BatchNormLayout& L, const double* mean,
                      const double* scale, const double* shift, double* sum_y2) {
  AT_DISPATCH_FLOATING_TYPES(xt.scalar_type(), "bnlab_batch_norm_transform", [&] {
    using T = scalar_t;
    const T* x = xt.data_ptr<T>();
    T* y = yt.data_ptr<T>();
    const int64_t C = L.channels;
    if (L.channel_minor) {
      ChannelVector<T> mu(mean, mean + C), sc(scale, scale + C), sh(shift, shift + C);
      minor_transform(x, y, L, mu, sc, sh, sum_y2);
      return;
    }
    ThreadSums y2(at::get_num_threads());
    const int64_t total = L.outer * C;
    const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(L.inner, 1));
    const int64_t bytes = total * L.inner * static_cast<int64_t>(sizeof(T));
    const bool stream = should_stream_output(bytes, bytes);
    const auto transform = stream ? span_transform_streaming<T> : span_transform<T>;
    at::parallel_for(0, total, grain, [&](int64_t begin, int64_t end) {
      double local = 0;
      for (int64_t i = begin; i < end; ++i) {
        const int64_t c = i % C;
        local += transform(x + i * L.inner, y + i * L.inner, L.inner, static_cast<T>(mean[c]),
                           static_cast<T>(scale[c]), static_cast<T>(shift[c]), sum_y2 != nullptr);
      }
      if (stream) stream_fence();
      y2() += local;
    });
    if (sum_y2 != nullptr) *sum_y2 = y2.total();
  });
}

template <typename T>
void backward_impl(const at::Tensor& gt, const at::Tensor& xt, const at::Tensor& dxt, const BatchNormLayout& L,
                   const BatchNormBackwardArgs& a) {
  const T* g = gt.data_ptr<T>();
  const T* x = xt.data_ptr<T>();
  T* dx = dxt.defined() ? dxt.data_ptr<T>() : nullptr;
  const int64_t C = L.channels;
  const int threads = at::get_num_threads();
  const bool want_g2 = a.sum_g2 != nullptr;
  const bool want_dx2 = a.sum_dx2 != nullptr && dx != nullptr;
  ThreadSums g2(threads), dx2(threads);
  auto coefficient_a = [&](int64_t c) { return (a.weight != nullptr ? a.weight[c] : 1.0) * a.invstd[c]; };

  if (!L.channel_minor) {
    // Channel by channel: the reduction's data is still in cache for dx.
    const int64_t per_channel = L.outer * L.inner;
    const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(per_channel, 1));
    at::parallel_for(0, C, grain, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const T mu = static_cast<T>(a.mean[c]);
        const double ac = coefficient_a(c);
        double sd = 0, sdx = 0, lg2 = 0, ldx2 = 0;
        if (a.eval) {
          for (int64_t n = 0; n < L.outer; ++n) {
            const int64_t off = (n * C + c) * L.inner;
            ldx2 += span_backward_eval(g + off, x + off, dx != nullptr ? dx + off : nullptr, L.inner, mu,
                                       static_cast<T>(ac), sd, sdx, want_g2 ? &lg2 : nullptr, want_dx2);
          }
        } else {
          if (a.reduced_sum_dy != nullptr) {
            sd = a.reduced_sum_dy[c];
            sdx = a.reduced_sum_dy_xmu[c];
            if (want_g2) {
              double unused1 = 0, unused2 = 0;
              for (int64_t n = 0; n < L.outer; ++n) {
                const int64_t off = (n * C + c) * L.inner;
                span_reduce(g + off, x + off, L.inner, mu, unused1, unused2, &lg2);
              }
            }
          } else {
            for (int64_t n = 0; n < L.outer; ++n) {
              const int64_t off = (n * C + c) * L.inner;
              span_reduce(g + off, x + off, L.inner, mu, sd, sdx, want_g2 ? &lg2 : nullptr);
            }
          }
          if (dx != nullptr) {
            const double r = a.invstd[c];
            const double b = a.count > 0 ? ac * r * r * sdx / a.count : 0.0;
            const double cc = a.count > 0 ? ac * sd / a.count : 0.0;
            for (int64_t n = 0; n < L.outer; ++n) {
              const int64_t off = (n * C + c) * L.inner;
              ldx2 += span_backward(g + off, x + off, dx + off, L.inner, mu, static_cast<T>(ac), static_cast<T>(b),
                                    static_cast<T>(cc), want_dx2);
            }
          }
        }
        if (a.sum_dy != nullptr) a.sum_dy[c] = sd;
        if (a.sum_dy_xmu != nullptr) a.sum_dy_xmu[c] = sdx;
        g2() += lg2;
        dx2() += ldx2;
      }
    });
  } else {
    using V = Vectorized<T>;
    constexpr int64_t W = V::size();
    ChannelVector<T> mu(static_cast<size_t>(C)), av(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      mu[static_cast<size_t>(c)] = static_cast<T>(a.mean[c]);
      av[static_cast<size_t>(c)] = static_cast<T>(coefficient_a(c));
    }
    const int64_t grain = std::max<int64_t>(1, kGrainElements / C);
    std::vector<double> sd(static_cast<size_t>(C), 0.0), sdx(static_cast<size_t>(C), 0.0);
    const bool reduce = a.reduced_sum_dy == nullptr;
    if (reduce || want_g2) {
      // Pass 1: per-channel Σg and Σg(x − μ) (and eval's dx), per thread.
      std::vector<double> partial(static_cast<size_t>(threads * 2 * C), 0.0);
      // The loop is instantiated per combination of the flags, so none is
      // tested per element.
      auto pass1 = [&](auto want_g2_c, auto eval_dx_c, auto want_dx2_c) {
        constexpr bool kG2 = decltype(want_g2_c)::value;
        constexpr bool kEvalDx = decltype(eval_dx_c)::value;
        constexpr bool kDx2 = decltype(want_dx2_c)::value;
        at::parallel_for(0, L.outer, grain, [&](int64_t begin, int64_t end) {
          const int t = at::get_thread_num();
          double* p1 = partial.data() + t * 2 * C;
          double* p2 = p1 + C;
          V lg2(T(0)), ldx2(T(0));
          // One vector of g (and x) at i, channels [c, c + k): its part of the
          // sums (zero lanes add nothing), Σg², and eval's dx.
          auto per_vector = [&](int64_t i, int64_t c, auto k, V& s1, V& s2) {
            const V gv = load(g + i, k);
            s1 = s1 + gv;
            s2 = at::vec::fmadd(gv, load(x + i, k) - load(mu.data() + c, k), s2);
            if constexpr (kG2) lg2 = at::vec::fmadd(gv, gv, lg2);
            if constexpr (kEvalDx) {
              const V dv = gv * load(av.data() + c, k);
              store(dv, dx + i, k);
              if constexpr (kDx2) ldx2 = at::vec::fmadd(dv, dv, ldx2);
            }
          };
          if (C >= kRowMajorMinVectors * W) {
            rows_channel_sums<T>(begin, end, C, p1, p2, per_vector, [] {});
          } else {
            for_row_channel_blocks<T>(begin, end, C, [&](int64_t c, auto k, int64_t b0, int64_t b1) {
              V s1(T(0)), s2(T(0));
              for (int64_t r = b0; r < b1; ++r) per_vector(r * C + c, c, k, s1, s2);
              T l1[W], l2[W];
              s1.store(l1);
              s2.store(l2);
              for (int64_t j = 0; j < k; ++j) {
                p1[c + j] += static_cast<double>(l1[j]);
                p2[c + j] += static_cast<double>(l2[j]);
              }
            });
          }
          if constexpr (kG2) g2() += horizontal_sum(lg2);
          if constexpr (kDx2) dx2() += horizontal_sum(ldx2);
        });
      };
      using True = std::true_type;
      using False = std::false_type;
      const bool eval_dx = a.eval && dx != nullptr;
      if (want_g2) {
        if (eval_dx) {
          if (want_dx2) {
            pass1(True{}, True{}, True{});
          } else {
            pass1(True{}, True{}, False{});
          }
        } else {
          pass1(True{}, False{}, False{});
        }
      } else if (eval_dx) {
        pass1(False{}, True{}, False{});
      } else {
        pass1(False{}, False{}, False{});
      }
      for (int t = 0; t < threads; ++t) {
        for (int64_t c = 0; c < C; ++c) {
          sd[static_cast<size_t>(c)] += partial[static_cast<size_t>(t * 2 * C + c)];
          sdx[static_cast<size_t>(c)] += partial[static_cast<size_t>(t * 2 * C + C + c)];
        }
      }
    }
    if (!reduce) {
      for (int64_t c = 0; c < C; ++c) {
        sd[static_cast<size_t>(c)] = a.reduced_sum_dy[c];
        sdx[static_cast<size_t>(c)] = a.reduced_sum_dy_xmu[c];
      }
    }
    if (!a.eval && dx != nullptr) {
      // Pass 2: dx = g·a − (x − μ)·b − c.
      ChannelVector<T> bv(static_cast<size_t>(C)), cv(static_cast<size_t>(C));
      for (int64_t c = 0; c < C; ++c) {
        const auto k = static_cast<size_t>(c);
        const double r = a.invstd[c];
        bv[k] = static_cast<T>(a.count > 0 ? coefficient_a(c) * r * r * sdx[k] / a.count : 0.0);
        cv[k] = static_cast<T>(a.count > 0 ? coefficient_a(c) * sd[k] / a.count : 0.0);
      }
      at::parallel_for(0, L.outer, grain, [&](int64_t begin, int64_t end) {
        V ldx2(T(0));
        rows_elementwise<T>(begin, end, C, [&](int64_t i, int64_t c, auto k) {
          const V v = load(g + i, k) * load(av.data() + c, k) -
                      ((load(x + i, k) - load(mu.data() + c, k)) * load(bv.data() + c, k) + load(cv.data() + c, k));
          store(v, dx + i, k);
          if (want_dx2) ldx2 = at::vec::fmadd(v, v, ldx2);  // zero lanes: all terms zero
        });
        dx2() += horizontal_sum(ldx2);
      });
    }
    for (int64_t c = 0; c < C; ++c) {
      if (a.sum_dy != nullptr) a.sum_dy[c] = sd[static_cast<size_t>(c)];
      if (a.sum_dy_xmu != nullptr) a.sum_dy_xmu[c] = sdx[static_cast<size_t>(c)];
    }
  }
  if (a.sum_g2 != nullptr) *a.sum_g2 = g2.total();
  if (a.sum_dx2 != nullptr) *a.sum_dx2 = want_dx2 ? dx2.total() : 0.0;
}

void backward_kernel(const at::Tensor& g, const at::Tensor& x, const at::Tensor& dx, const BatchNormLayout& layout,
                     const BatchNormBackwardArgs& args) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bnlab_batch_norm_backward", [&] {
    backward_impl<scalar_t>(g, x, dx, layout, args);
  });
}

}  // namespace

}  // inline namespace CPU_CAPABILITY

BNLAB_REGISTER_KERNEL(batch_norm_forward_train_stub, forward_train_kernel);
BNLAB_REGISTER_KERNEL(batch_norm_transform_stub, transform_kernel);
BNLAB_REGISTER_KERNEL(batch_norm_stats_stub, stats_kernel);
BNLAB_REGISTER_KERNEL(batch_norm_backward_stub, backward_kernel);

}  // namespace bnlab::kernels::cpu
