// Fused BatchNorm + activation CPU kernels; compiled once per CPU capability.
// The BatchNorm output z is computed in registers and never written.
#include "kernels/cpu/batch_norm_act_kernel.h"

#include "bnlab/nn/probe.h"
#include "kernels/cpu/activation_ops.h"
#include "kernels/cpu/batch_norm_helpers.h"
#include "kernels/cpu/vec_helpers.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <type_traits>
#include <vector>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

namespace {

namespace slot = nn::activation_stat;

// Channels whose M values fit this many elements keep dz in a per-thread
// buffer between the backward's two passes (1 MiB of float32: stays in L2).
constexpr int64_t kCachedChannelElements = 1 << 18;

template <typename T>
std::vector<T>& dz_buffer(size_t size) {
  static thread_local std::vector<T> buffer;
  if (buffer.size() < size) buffer.resize(size);
  return buffer;
}

// Lane mask → whether every lane is set.
template <typename T>
bool all_lanes(const Vectorized<T>& mask) {
  using V = Vectorized<T>;
  return horizontal_max(V::blendv(V(T(1)), V(T(0)), mask)) == T(0);
}

// ---- forward ------------------------------------------------------------------

template <typename T, typename Op>
void forward_impl(const at::Tensor& xt, const at::Tensor& yt, const BatchNormLayout& L, const Op& op,
                  const BatchNormActForwardArgs& a) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const T* x = xt.data_ptr<T>();
  T* y = yt.data_ptr<T>();
  const int64_t C = L.channels;
  const ChannelParam gamma(a.weight, 1.0), beta(a.bias, 0.0);
  const bool want_stats = a.act_stats != nullptr;
  const int threads = at::get_num_threads();
  ForwardSums acc(want_stats ? threads : 1);
  const V all_set = V(T(0)) == V(T(0));
  auto set_statistics = [&](int64_t c, const Moments& m) {
    a.mean[c] = m.mean;
    a.var[c] = m.n > 0 ? m.m2 / m.n : 0.0;
    a.invstd[c] = 1.0 / std::sqrt(a.var[c] + a.eps);
  };
  ThreadSums dead(threads);

  if (!L.channel_minor) {
    // Channel by channel: statistics, then z and f(z) while the data is in cache.
    const int64_t per_channel = L.outer * L.inner;
    const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(per_channel, 1));
    const int64_t full = L.inner - L.inner % W;
    const V tail_mask = lane_mask<T>(L.inner - full);
    at::parallel_for(0, C, grain, [&](int64_t begin, int64_t end) {
      // A local accumulator (kept in registers), added to the thread's slot at the end.
      ForwardTotals<T> tot;
      for (int64_t c = begin; c < end; ++c) {
        if (a.training) {
          Moments m;
          for (int64_t n = 0; n < L.outer; ++n) span_moments(x + (n * C + c) * L.inner, L.inner, m);
          set_statistics(c, m);
        }
        const V mu(static_cast<T>(a.mean[c]));
        const V scale(static_cast<T>(gamma[c] * a.invstd[c]));
        const V shift(static_cast<T>(beta[c]));
        V all_sat = all_set;
        for (int64_t n = 0; n < L.outer; ++n) {
          const int64_t off = (n * C + c) * L.inner;
          const T* xp = x + off;
          T* yp = y + off;
          for (int64_t i = 0; i < full; i += W) {
            const V z = at::vec::fmadd(V::loadu(xp + i) - mu, scale, shift);
            const V yv = op.forward(z);
            yv.store(yp + i);
            if (want_stats) all_sat = all_sat & tot.add_full(op, z, yv);
          }
          if (full < L.inner) {
            const int64_t count = L.inner - full;
            const V z = at::vec::fmadd(load_partial(xp + full, count) - mu, scale, shift);
            const V yv = op.forward(z);
            store_partial(yv, yp + full, count);
            if (want_stats) all_sat = all_sat & tot.add_masked(op, z, yv, tail_mask);
          }
        }
        if (want_stats && all_lanes(all_sat)) dead() += 1;
      }
      if (want_stats) add_thread_totals(acc, tot);
    });
  } else {
    if (a.training) {
      std::vector<Moments> moments;
      minor_moments(x, L, moments);
      for (int64_t c = 0; c < C; ++c) set_statistics(c, moments[static_cast<size_t>(c)]);
    }
    ChannelVector<T> mu(static_cast<size_t>(C)), scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      mu[static_cast<size_t>(c)] = static_cast<T>(a.mean[c]);
      scale[static_cast<size_t>(c)] = static_cast<T>(gamma[c] * a.invstd[c]);
      shift[static_cast<size_t>(c)] = static_cast<T>(beta[c]);
    }
    // alive[t·C + c] = 1 once thread t saw an unsaturated value of channel c.
    ChannelVector<T> alive(want_stats ? static_cast<size_t>(threads * C) : 0, T(0));
    const int64_t grain = std::max<int64_t>(1, kGrainElements / C);
    at::parallel_for(0, L.outer, grain, [&](int64_t begin, int64_t end) {
      const int t = at::get_thread_num();
      ForwardTotals<T> tot;
      for_row_channel_blocks<T>(begin, end, C, [&](int64_t c, auto k, int64_t b0, int64_t b1) {
        const V m = load(mu.data() + c, k), s = load(scale.data() + c, k), b = load(shift.data() + c, k);
        if (!want_stats) {
          for (int64_t r = b0; r < b1; ++r) {
            store(op.forward(at::vec::fmadd(load(x + r * C + c, k) - m, s, b)), y + r * C + c, k);
          }
          return;
        }
        V all_sat = all_set;
        if (k == W) {
          for (int64_t r = b0; r < b1; ++r) {
            const V z = at::vec::fmadd(V::loadu(x + r * C + c) - m, s, b);
            const V yv = op.forward(z);
            yv.store(y + r * C + c);
            all_sat = all_sat & tot.add_full(op, z, yv);
          }
        } else {
          const V valid = lane_mask<T>(k);
          for (int64_t r = b0; r < b1; ++r) {
            const V z = at::vec::fmadd(load_partial(x + r * C + c, k) - m, s, b);
            const V yv = op.forward(z);
            store_partial(yv, y + r * C + c, k);
            all_sat = all_sat & tot.add_masked(op, z, yv, valid);
          }
        }
        T* where = alive.data() + t * C + c;
        const V unsat = V::blendv(V(T(1)), V(T(0)), all_sat);
        store(at::vec::maximum(load(where, k), unsat), where, k);
      });
      if (want_stats) add_thread_totals(acc, tot);
    });
    if (want_stats) {
      for (int64_t c = 0; c < C; ++c) {
        bool any = false;
        for (int t = 0; t < threads && !any; ++t) any = alive[static_cast<size_t>(t * C + c)] > T(0);
        if (!any) dead.values[0] += 1;
      }
    }
  }
  if (want_stats) finish_forward_stats(acc, dead.total(), y, xt.numel(), a.act_stats);
}

void forward_kernel(const at::Tensor& x, const at::Tensor& y, const BatchNormLayout& layout,
                    const ActivationParams& params, const BatchNormActForwardArgs& args) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bnlab_batch_norm_act_forward", [&] {
    with_op<scalar_t>(params, [&](const auto& op) { forward_impl<scalar_t>(x, y, layout, op, args); });
  });
}

// ---- backward -----------------------------------------------------------------

// Per-channel constants of the backward, as vectors.
template <typename T>
struct Coefficients {
  Vectorized<T> mu, scale, shift;  // z = (x − μ)·scale + shift, scale = γr
};

// Loads W values, or the first k (the others zero) when Masked.
template <bool Masked, typename T>
inline Vectorized<T> load_n(const T* p, int64_t k) {
  if constexpr (Masked) {
    return load_partial(p, k);
  } else {
    (void)k;
    return Vectorized<T>::loadu(p);
  }
}

template <bool Masked, typename T>
inline void store_n(const Vectorized<T>& v, T* p, int64_t k) {
  if constexpr (Masked) {
    store_partial(v, p, k);
  } else {
    (void)k;
    v.store(p);
  }
}

// dz = g·f′ for one vector: f′ from y when the activation's derivative reads
// its output, else from z recomputed from x.
template <bool Masked, typename T, typename Op>
inline Vectorized<T> dz_of(const Op& op, const Vectorized<T>& g, const Vectorized<T>& xv, const T* yp, int64_t k,
                           const Coefficients<T>& k_) {
  if constexpr (Op::kFromOutput) {
    (void)xv;
    return g * op.derivative(load_n<Masked>(yp, k));
  } else {
    (void)yp;
    return g * op.derivative(at::vec::fmadd(xv - k_.mu, k_.scale, k_.shift));
  }
}

// Σ of squares and channel sums, flushed to double per span.
template <typename T>
struct BackwardSums {
  using V = Vectorized<T>;
  V s1{T(0)}, s2{T(0)}, g2{T(0)}, dz2{T(0)};
};

template <typename T, typename Op>
void backward_impl(const at::Tensor& gt, const at::Tensor& xt, const at::Tensor& yt, const at::Tensor& dxt,
                   const BatchNormLayout& L, const Op& op, const BatchNormActBackwardArgs& a) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const T* g = gt.data_ptr<T>();
  const T* x = xt.data_ptr<T>();
  const T* y = Op::kFromOutput ? yt.data_ptr<T>() : nullptr;
  T* dx = dxt.defined() ? dxt.data_ptr<T>() : nullptr;
  const int64_t C = L.channels;
  const int threads = at::get_num_threads();
  const bool want_stats = a.act_stats != nullptr;
  ThreadSums g2(threads), dz2(threads);
  auto coefficients = [&](int64_t c) {
    const double gamma = a.weight != nullptr ? a.weight[c] : 1.0;
    return Coefficients<T>{V(static_cast<T>(a.mean[c])), V(static_cast<T>(gamma * a.invstd[c])),
                           V(static_cast<T>(a.bias != nullptr ? a.bias[c] : 0.0))};
  };
  // dx = dz·scale − (x − μ)·b − c (training), with the channel's sums.
  auto second_coefficients = [&](int64_t c, double sum_dz, double sum_dz_xmu) {
    const double gamma_r = (a.weight != nullptr ? a.weight[c] : 1.0) * a.invstd[c];
    const double r = a.invstd[c];
    const double b = a.count > 0 ? gamma_r * r * r * sum_dz_xmu / a.count : 0.0;
    const double cc = a.count > 0 ? gamma_r * sum_dz / a.count : 0.0;
    return std::make_pair(b, cc);
  };

  if (!L.channel_minor) {
    const int64_t per_channel = L.outer * L.inner;
    const bool cache = !a.eval && dx != nullptr && per_channel <= kCachedChannelElements;
    const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(per_channel, 1));
    at::parallel_for(0, C, grain, [&](int64_t begin, int64_t end) {
      T* buf = cache ? dz_buffer<T>(static_cast<size_t>(per_channel)).data() : nullptr;
      double lg2 = 0, ldz2 = 0;
      for (int64_t c = begin; c < end; ++c) {
        const Coefficients<T> k_ = coefficients(c);
        double sum_dz = 0, sum_dz_xmu = 0;
        // Pass 1: dz, its sums (and eval's dx).
        for (int64_t n = 0; n < L.outer; ++n) {
          const int64_t off = (n * C + c) * L.inner;
          BackwardSums<T> s;
          auto step = [&](auto masked, int64_t i, int64_t k) {
            constexpr bool kMasked = decltype(masked)::value;
            const V gv = load_n<kMasked>(g + off + i, k);
            const V xv = load_n<kMasked>(x + off + i, k);
            V dz = dz_of<kMasked>(op, gv, xv, y != nullptr ? y + off + i : nullptr, k, k_);
            if constexpr (kMasked) dz = V::blendv(V(T(0)), dz, lane_mask<T>(k));
            s.s1 = s.s1 + dz;
            s.s2 = at::vec::fmadd(dz, xv - k_.mu, s.s2);
            if (want_stats) {
              s.g2 = at::vec::fmadd(gv, gv, s.g2);
              s.dz2 = at::vec::fmadd(dz, dz, s.dz2);
            }
            if (buf != nullptr) store_n<kMasked>(dz, buf + n * L.inner + i, k);
            if (a.eval && dx != nullptr) store_n<kMasked>(dz * k_.scale, dx + off + i, k);
          };
          int64_t i = 0;
          for (; i + W <= L.inner; i += W) step(std::false_type{}, i, W);
          if (i < L.inner) step(std::true_type{}, i, L.inner - i);
          sum_dz += horizontal_sum(s.s1);
          sum_dz_xmu += horizontal_sum(s.s2);
          if (want_stats) {
            lg2 += horizontal_sum(s.g2);
            ldz2 += horizontal_sum(s.dz2);
          }
        }
        a.sum_dz[c] = sum_dz;
        a.sum_dz_xmu[c] = sum_dz_xmu;
        if (a.eval || dx == nullptr) continue;
        // Pass 2: dx from dz (cached, or recomputed) and x.
        const auto [b, cc] = second_coefficients(c, sum_dz, sum_dz_xmu);
        const V bv(static_cast<T>(b)), cv(static_cast<T>(cc));
        for (int64_t n = 0; n < L.outer; ++n) {
          const int64_t off = (n * C + c) * L.inner;
          auto step = [&](auto masked, int64_t i, int64_t k) {
            constexpr bool kMasked = decltype(masked)::value;
            const V xv = load_n<kMasked>(x + off + i, k);
            const V dz = buf != nullptr ? load_n<kMasked>(buf + n * L.inner + i, k)
                                        : dz_of<kMasked>(op, load_n<kMasked>(g + off + i, k), xv,
                                                         y != nullptr ? y + off + i : nullptr, k, k_);
            store_n<kMasked>(dz * k_.scale - ((xv - k_.mu) * bv + cv), dx + off + i, k);
          };
          int64_t i = 0;
          for (; i + W <= L.inner; i += W) step(std::false_type{}, i, W);
          if (i < L.inner) step(std::true_type{}, i, L.inner - i);
        }
      }
      g2() += lg2;
      dz2() += ldz2;
    });
  } else {
    // Per-channel coefficients, loaded W lanes at a time.
    ChannelVector<T> mu(static_cast<size_t>(C)), scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      const double gamma = a.weight != nullptr ? a.weight[c] : 1.0;
      mu[static_cast<size_t>(c)] = static_cast<T>(a.mean[c]);
      scale[static_cast<size_t>(c)] = static_cast<T>(gamma * a.invstd[c]);
      shift[static_cast<size_t>(c)] = static_cast<T>(a.bias != nullptr ? a.bias[c] : 0.0);
    }
    auto block_coefficients = [&](int64_t c, auto k) {
      return Coefficients<T>{load(mu.data() + c, k), load(scale.data() + c, k), load(shift.data() + c, k)};
    };
    const int64_t grain = std::max<int64_t>(1, kGrainElements / C);
    std::vector<double> partial(static_cast<size_t>(threads * 2 * C), 0.0);
    at::parallel_for(0, L.outer, grain, [&](int64_t begin, int64_t end) {
      const int t = at::get_thread_num();
      double* p1 = partial.data() + t * 2 * C;
      double* p2 = p1 + C;
      double lg2 = 0, ldz2 = 0;
      // One vector at off = r·C + c, channels [c, c + k): dz, its part of the
      // channel sums (s1, s2) and of Σg², Σdz², and eval's dx.
      auto per_vector = [&](auto masked, int64_t off, int64_t c, int64_t k, const Coefficients<T>& k_, V& s1, V& s2,
                            BackwardSums<T>& s) {
        constexpr bool kMasked = decltype(masked)::value;
        const V gv = load_n<kMasked>(g + off, k);
        const V xv = load_n<kMasked>(x + off, k);
        V dz = dz_of<kMasked>(op, gv, xv, y != nullptr ? y + off : nullptr, k, k_);
        if constexpr (kMasked) dz = V::blendv(V(T(0)), dz, lane_mask<T>(k));
        s1 = s1 + dz;
        s2 = at::vec::fmadd(dz, xv - k_.mu, s2);
        if (want_stats) {
          s.g2 = at::vec::fmadd(gv, gv, s.g2);
          s.dz2 = at::vec::fmadd(dz, dz, s.dz2);
        }
        if (a.eval && dx != nullptr) store_n<kMasked>(dz * k_.scale, dx + off, k);
      };
      if (C >= kRowMajorMinVectors * W) {
        BackwardSums<T> s;  // Σg² and Σdz², summed into double per row block
        rows_channel_sums<T>(
            begin, end, C, p1, p2,
            [&](int64_t off, int64_t c, auto k, V& v1, V& v2) {
              if constexpr (std::is_same_v<decltype(k), WholeBlock<T>>) {
                per_vector(std::false_type{}, off, c, W, block_coefficients(c, k), v1, v2, s);
              } else {
                per_vector(std::true_type{}, off, c, k, block_coefficients(c, k), v1, v2, s);
              }
            },
            [&] {
              if (want_stats) {
                lg2 += horizontal_sum(s.g2);
                ldz2 += horizontal_sum(s.dz2);
              }
              s = BackwardSums<T>{};
            });
      } else {
        for_row_channel_blocks<T>(begin, end, C, [&](int64_t c, auto k, int64_t b0, int64_t b1) {
          const Coefficients<T> k_ = block_coefficients(c, k);
          BackwardSums<T> s;
          auto rows = [&](auto masked) {
            for (int64_t r = b0; r < b1; ++r) per_vector(masked, r * C + c, c, k, k_, s.s1, s.s2, s);
          };
          if (k == W) {
            rows(std::false_type{});
          } else {
            rows(std::true_type{});
          }
          T l1[W], l2[W];
          s.s1.store(l1);
          s.s2.store(l2);
          for (int64_t j = 0; j < k; ++j) {
            p1[c + j] += static_cast<double>(l1[j]);
            p2[c + j] += static_cast<double>(l2[j]);
          }
          if (want_stats) {
            lg2 += horizontal_sum(s.g2);
            ldz2 += horizontal_sum(s.dz2);
          }
        });
      }
      g2() += lg2;
      dz2() += ldz2;
    });
    for (int64_t c = 0; c < C; ++c) {
      double s1 = 0, s2 = 0;
      for (int t = 0; t < threads; ++t) {
        s1 += partial[static_cast<size_t>(t * 2 * C + c)];
        s2 += partial[static_cast<size_t>(t * 2 * C + C + c)];
      }
      a.sum_dz[c] = s1;
      a.sum_dz_xmu[c] = s2;
    }
    if (!a.eval && dx != nullptr) {
      ChannelVector<T> bvec(static_cast<size_t>(C)), cvec(static_cast<size_t>(C));
      for (int64_t c = 0; c < C; ++c) {
        const auto [b, cc] = second_coefficients(c, a.sum_dz[c], a.sum_dz_xmu[c]);
        bvec[static_cast<size_t>(c)] = static_cast<T>(b);
        cvec[static_cast<size_t>(c)] = static_cast<T>(cc);
      }
      // dx = dz·scale − ((x − μ)·b + c), dz recomputed from g and x (or y).
      auto dx_vector = [&](auto masked, int64_t off, int64_t c, int64_t k, const Coefficients<T>& k_, const V& bv,
                           const V& cv) {
        constexpr bool kMasked = decltype(masked)::value;
        const V xv = load_n<kMasked>(x + off, k);
        const V dz = dz_of<kMasked>(op, load_n<kMasked>(g + off, k), xv, y != nullptr ? y + off : nullptr, k, k_);
        store_n<kMasked>(dz * k_.scale - ((xv - k_.mu) * bv + cv), dx + off, k);
      };
      at::parallel_for(0, L.outer, grain, [&](int64_t begin, int64_t end) {
        if (C >= kRowMajorMinVectors * W) {
          rows_elementwise<T>(begin, end, C, [&](int64_t off, int64_t c, auto k) {
            if constexpr (std::is_same_v<decltype(k), WholeBlock<T>>) {
              dx_vector(std::false_type{}, off, c, W, block_coefficients(c, k), V::loadu(bvec.data() + c),
                        V::loadu(cvec.data() + c));
            } else {
              dx_vector(std::true_type{}, off, c, k, block_coefficients(c, k), load(bvec.data() + c, k),
                        load(cvec.data() + c, k));
            }
          });
          return;
        }
        for_row_channel_blocks<T>(begin, end, C, [&](int64_t c, auto k, int64_t b0, int64_t b1) {
          const Coefficients<T> k_ = block_coefficients(c, k);
          const V bv = load(bvec.data() + c, k), cv = load(cvec.data() + c, k);
          auto rows = [&](auto masked) {
            for (int64_t r = b0; r < b1; ++r) dx_vector(masked, r * C + c, c, k, k_, bv, cv);
          };
          if (k == W) {
            rows(std::false_type{});
          } else {
            rows(std::true_type{});
          }
        });
      });
    }
  }
  if (want_stats) {
    const double total_dz2 = dz2.total();
    a.act_stats[slot::kGradOutputSumSq] = g2.total();
    a.act_stats[slot::kGradInputSumSq] = total_dz2;
    // Rare path: count the non-finite dz only when their sum says there are some.
    double nonfinite = 0.0;
    if (!std::isfinite(total_dz2)) {
      const int64_t n = xt.numel();
      for (int64_t i = 0; i < n; ++i) {
        const int64_t c = L.channel_minor ? i % C : (i / L.inner) % C;
        const Coefficients<T> k_ = coefficients(c);
        const V dz = dz_of<true>(op, V(g[i]), V(x[i]), y != nullptr ? y + i : nullptr, 1, k_);
        T lanes[W];
        dz.store(lanes);
        nonfinite += std::isfinite(lanes[0]) ? 0.0 : 1.0;
      }
    }
    a.act_stats[slot::kNonFiniteGradInput] = nonfinite;
  }
}

void backward_kernel(const at::Tensor& g, const at::Tensor& x, const at::Tensor& y, const at::Tensor& dx,
                     const BatchNormLayout& layout, const ActivationParams& params,
                     const BatchNormActBackwardArgs& args) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bnlab_batch_norm_act_backward", [&] {
    with_op<scalar_t>(params, [&](const auto& op) { backward_impl<scalar_t>(g, x, y, dx, layout, op, args); });
  });
}

}  // namespace

}  // inline namespace CPU_CAPABILITY

BNLAB_REGISTER_KERNEL(batch_norm_act_forward_stub, forward_kernel);
BNLAB_REGISTER_KERNEL(batch_norm_act_backward_stub, backward_kernel);

}  // namespace bnlab::kernels::cpu
