// Building blocks of the batch-norm kernels, shared by the BatchNorm and the
// fused BatchNorm + activation kernels: per-channel moments (accurate as two
// passes, one read), per-thread sums and the loops of the channel-minor
// layout. Included only from kernel sources (compiled per CPU capability).
#pragma once

#include "kernels/cpu/batch_norm_kernel.h"
#include "kernels/cpu/vec_helpers.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

using at::vec::Vectorized;

// Values per cache-resident chunk: a chunk is read from memory once and
// traversed twice (its own mean, then the centered sums) from L1/L2.
inline constexpr int64_t kChunk = 4096;
// Row blocks of the channel-minor layout: about 16 KB (L1-resident while each
// block of channels streams its rows, so a row's cache lines come from memory
// once), but at least 16 rows, so that wide rows (C = 1024) do not fall into
// per-block bookkeeping.
inline constexpr int64_t kRowBlockElements = 4096;
inline constexpr int64_t kMinBlockRows = 16;
// Elements per task below which a kernel stays on one thread.
inline constexpr int64_t kGrainElements = 32768;

// A std::vector allocator aligned to 64 bytes: vectors of per-channel values
// loaded with whole-vector loads (coefficients, L1-resident sums) then never
// split a cache line, as every AVX-512 load from std::vector's 16-byte-aligned
// storage would (two L1 accesses each).
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};
  CacheLineAllocator() = default;
  template <typename U>
  explicit CacheLineAllocator(const CacheLineAllocator<U>& /*unused*/) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, size_t /*unused*/) { ::operator delete(p, kAlignment); }
  friend bool operator==(const CacheLineAllocator&, const CacheLineAllocator&) { return true; }
  friend bool operator!=(const CacheLineAllocator&, const CacheLineAllocator&) { return false; }
};
template <typename T>
using ChannelVector = std::vector<T, CacheLineAllocator<T>>;

// Count, mean and centered sum of squares of a set of values; merged with
// Chan et al.'s pairwise formula, in double.
struct Moments {
  double n = 0;
  double mean = 0;
  double m2 = 0;
  void merge(double nb, double mean_b, double m2_b) {
    if (nb == 0) return;
    if (n == 0) {
      n = nb;
      mean = mean_b;
      m2 = m2_b;
      return;
    }
    const double total = n + nb;
    const double delta = mean_b - mean;
    mean += delta * nb / total;
    m2 += m2_b + delta * delta * n * nb / total;
    n = total;
  }
  void merge(const Moments& o) { merge(o.n, o.mean, o.m2); }
};

template <typename T>
double span_sum(const T* x, int64_t len) {
  using V = Vectorized<T>;
  V acc(T(0));
  int64_t i = 0;
  for (; i + V::size() <= len; i += V::size()) acc = acc + V::loadu(x + i);
  if (i < len) acc = acc + load_partial(x + i, len - i);  // partial loads zero the other lanes
  return horizontal_sum(acc);
}

// Moments of x[0..len), chunk by chunk: each chunk's approximate mean s (first
// pass) centers the second pass, Σ(x − s) and Σ(x − s)², which is accurate in
// float32 because the centered values are small.
template <typename T>
void span_moments(const T* x, int64_t len, Moments& into) {
  using V = Vectorized<T>;
  for (int64_t o = 0; o < len; o += kChunk) {
    const int64_t m = std::min(kChunk, len - o);
    const T* p = x + o;
    const T s = static_cast<T>(span_sum(p, m) / static_cast<double>(m));
    const V sv(s);
    V a1(T(0)), a2(T(0));
    int64_t i = 0;
    for (; i + V::size() <= m; i += V::size()) {
      const V v = V::loadu(p + i) - sv;
      a1 = a1 + v;
      a2 = at::vec::fmadd(v, v, a2);
    }
    if (i < m) {
      const V v = V::blendv(V(T(0)), load_partial(p + i, m - i) - sv, lane_mask<T>(m - i));
      a1 = a1 + v;
      a2 = at::vec::fmadd(v, v, a2);
    }
    const double d1 = horizontal_sum(a1);
    const double d2 = horizontal_sum(a2);
    const double n = static_cast<double>(m);
    into.merge(n, static_cast<double>(s) + d1 / n, std::max(0.0, d2 - d1 * d1 / n));
  }
}

// Per-thread scalars (Σy², ...), summed after a parallel loop; no heap
// allocation for up to 64 threads (these kernels also run on tiny inputs).
struct ThreadSums {
  std::array<double, 64> small{};
  std::vector<double> large;
  double* values;
  int n;
  explicit ThreadSums(int threads) : n(std::max(threads, 1)) {
    if (n > 64) large.assign(static_cast<size_t>(n), 0.0);
    values = n > 64 ? large.data() : small.data();
  }
  double& operator()() { return values[at::get_thread_num()]; }
  double total() const {
    double t = 0;
    for (int i = 0; i < n; ++i) t += values[i];
    return t;
  }
};

// A per-channel parameter read as double, with the dtype check done once;
// `fallback` when the parameter is undefined (γ = 1, β = 0).
struct ChannelParam {
  const float* f = nullptr;
  const double* d = nullptr;
  double fallback;
  ChannelParam(const at::Tensor& t, double value_if_undefined) : fallback(value_if_undefined) {
    if (!t.defined()) return;
    if (t.scalar_type() == at::kDouble) {
      d = t.data_ptr<double>();
    } else {
      f = t.data_ptr<float>();
    }
  }
  double operator[](int64_t c) const {
    return d != nullptr ? d[c] : f != nullptr ? static_cast<double>(f[c]) : fallback;
  }
};

// ---- channel-minor (rows of C) helpers --------------------------------------

// The channel count of a whole block of W channels, known at compile time, so
// the loads and stores of whole blocks compile without a lane-count test.
template <typename T>
using WholeBlock = std::integral_constant<int64_t, Vectorized<T>::size()>;

// Loops of the channel-minor layout: row blocks (cache-sized) × blocks of W
// channels, so each lane keeps its channel and accumulators stay in registers
// while the block's rows stream past. `f(c, k, row_begin, row_end)` handles the
// k ≤ W channels starting at c; f is a generic lambda (`auto k`): whole blocks
// get k as WholeBlock<T>, the last partial block as an int64_t.
template <typename T, typename F>
void for_row_channel_blocks(int64_t r0, int64_t r1, int64_t C, F&& f) {
  constexpr int64_t W = Vectorized<T>::size();
  const int64_t block = std::max<int64_t>(kMinBlockRows, kRowBlockElements / C);
  for (int64_t b0 = r0; b0 < r1; b0 += block) {
    const int64_t b1 = std::min(r1, b0 + block);
    int64_t c = 0;
    for (; c + W <= C; c += W) f(c, WholeBlock<T>{}, b0, b1);
    if (c < C) f(c, C - c, b0, b1);
  }
}

// Loads W (or k < W, zero-filling) values.
template <typename T, typename K>
inline Vectorized<T> load(const T* p, K k) {
  if constexpr (std::is_same_v<K, WholeBlock<T>>) {
    return Vectorized<T>::loadu(p);
  } else {
    return k == Vectorized<T>::size() ? Vectorized<T>::loadu(p) : load_partial(p, k);
  }
}

template <typename T, typename K>
inline void store(const Vectorized<T>& v, T* p, K k) {
  if constexpr (std::is_same_v<K, WholeBlock<T>>) {
    v.store(p);
  } else if (k == Vectorized<T>::size()) {
    v.store(p);
  } else {
    store_partial(v, p, k);
  }
}

// Row by row, in memory order: f(i, c, k) for the k ≤ W channels from c of
// each row, i = r·C + c (whole blocks get k as WholeBlock<T>, the partial last
// one an int64_t). Passes go row-major so the data streams sequentially for the
// prefetchers; per-channel coefficients or accumulators are reloaded from L1
// rather than kept in registers, which works for any C.
template <typename T, typename F>
inline void rows_elementwise(int64_t r0, int64_t r1, int64_t C, F&& f) {
  constexpr int64_t W = Vectorized<T>::size();
  const int64_t full = C - C % W;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = 0; c < full; c += W) f(r * C + c, c, WholeBlock<T>{});
    if (full < C) f(r * C + full, full, C - full);
  }
}

// The backward's and BatchNormAct's channel-minor reductions (rows_channel_sums)
// go row by row in memory order over rows of at least this many vectors, with
// the sums in registers up to kMaxRegisterRowVectors and in L1 beyond (a load
// and a store per vector, but C/W independent updates between two of one
// channel's). Narrower rows walk each W-channel column down a block of rows with
// the sums in registers: there one row's few sums would chain every add on the
// last. (The forward's moments handle narrow rows with register rows side by
// side: register_rows_moments.)
inline constexpr int64_t kRowMajorMinVectors = 4;

// One row block's centered sums of one channel, merged into its running
// moments (mu, sq): the block mean is shift + d1/b and its m2 is d2 − d1²/b.
inline void merge_block_moments(double shift, double d1, double d2, double inv_b, double w_mean, double w_m2,
                                double& mu, double& sq) {
  const double block_mean = shift + d1 * inv_b;
  const double block_m2 = std::max(0.0, d2 - d1 * d1 * inv_b);
  const double delta = block_mean - mu;
  mu += delta * w_mean;
  sq += block_m2 + delta * delta * w_m2;
}

// Rows of at most this many vectors keep a pass's per-channel state (sums,
// shifts: two or three vectors per vector of the row) in registers, one
// vector per channel block, instead of loading and storing it in L1 for every
// vector of every row. Through L1, one channel's updates are chained through
// memory from one row to the next (a store, then a load that must wait for it),
// which held a 64-channel reduction to a third of the memory bandwidth on
// AVX-512. Eight vectors need up to 24 of AVX-512's 32 registers; on AVX2's 16 a
// few spill to the stack, which still measured faster than the L1 arrays.
inline constexpr int kMaxRegisterRowVectors = 8;

// f(std::integral_constant<int, j>{}) for j = 0, …, N − 1, unrolled at compile
// time (over a row's vectors, or rows side by side): the state arrays it
// indexes stay in registers.
template <typename F, int... J>
C10_ALWAYS_INLINE void for_each_index(F&& f, std::integer_sequence<int, J...> /*unused*/) {
  (f(std::integral_constant<int, J>{}), ...);
}
template <int N, typename F>
C10_ALWAYS_INLINE void for_each_index(F&& f) {
  for_each_index(std::forward<F>(f), std::make_integer_sequence<int, N>{});
}

// Calls f(std::integral_constant<int, N>{}) with N = ⌈C/W⌉, the vectors per row,
// for N in [lo, kMaxRegisterRowVectors]; returns false (calling nothing) for
// other C.
template <typename T, int lo = 1, typename F>
bool with_register_row(int64_t C, F&& f) {
  constexpr int64_t W = Vectorized<T>::size();
  const int64_t vectors = (C + W - 1) / W;
  bool done = false;
  for_each_index<kMaxRegisterRowVectors + 1>([&](auto n) {
    constexpr int N = decltype(n)::value;
    if constexpr (N >= lo && N >= 1) {
      if (vectors == N) {
        f(n);
        done = true;
      }
    }
  });
  return done;
}

// Rows per step of a register-row reduction: enough rows side by side for at
// least four independent sums per pass (one row of a one-vector row would chain
// every add on the last).
constexpr int register_row_unroll(int vectors) { return (4 + vectors - 1) / vectors; }

// Calls f(i, c, k, j) for the N vectors of row r (i = r·C + c, channels [c, c + k),
// j the vector's index as a compile-time constant): whole vectors get k as
// WholeBlock<T>, a partial last one (tail < W lanes) as an int64_t.
template <typename T, int N, typename F>
C10_ALWAYS_INLINE void register_row(int64_t r, int64_t C, int64_t tail, F&& f) {
  constexpr int64_t W = Vectorized<T>::size();
  for_each_index<N>([&](auto j) {
    constexpr int64_t c = decltype(j)::value * W;
    if constexpr (decltype(j)::value + 1 < N) {
      f(r * C + c, c, WholeBlock<T>{}, j);
    } else if (tail == W) {
      f(r * C + c, c, WholeBlock<T>{}, j);
    } else {
      f(r * C + c, c, tail, j);
    }
  });
}

// Two per-channel sums over rows [r0, r1) (see kRowMajorMinVectors), row by
// row in memory order: for each vector of a row, f(i, c, k, s1, s2) adds its
// part into s1 and s2 (the sums of channels [c, c + k); lanes past k must get
// zero), and at the end of each row block the block's sums are added into
// p1[0..C) and p2[0..C) in double and block_end() runs. Per channel, the
// additions come in the order of a walk down that channel, one row block at a
// time. Rows of up to kMaxRegisterRowVectors vectors keep the sums in
// registers; longer ones in L1-resident arrays of T.
template <typename T, typename F, typename G>
void rows_channel_sums(int64_t r0, int64_t r1, int64_t C, double* p1, double* p2, F&& f, G&& block_end) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const int64_t block = std::max<int64_t>(kMinBlockRows, kRowBlockElements / C);
  // A row block's sums (C values each), added into the double totals.
  auto end_block = [&](const T* s1, const T* s2) {
    for (int64_t c = 0; c < C; ++c) {
      p1[c] += static_cast<double>(s1[c]);
      p2[c] += static_cast<double>(s2[c]);
    }
    block_end();
  };
  const bool in_registers = with_register_row<T, kRowMajorMinVectors>(C, [&](auto n) {
    constexpr int N = decltype(n)::value;
    const int64_t tail = C - (N - 1) * W;
    for (int64_t b0 = r0; b0 < r1; b0 += block) {
      const int64_t b1 = std::min(r1, b0 + block);
      V s1[N], s2[N];
      for_each_index<N>([&](auto j) { s1[j] = s2[j] = V(T(0)); });
      for (int64_t r = b0; r < b1; ++r) {
        register_row<T, N>(r, C, tail, [&](int64_t i, int64_t c, auto k, auto j) { f(i, c, k, s1[j], s2[j]); });
      }
      alignas(64) T l1[N * W], l2[N * W];
      for_each_index<N>([&](auto j) {
        s1[j].store(l1 + j * W);
        s2[j].store(l2 + j * W);
      });
      end_block(l1, l2);
    }
  });
  if (in_registers) return;
  const int64_t padded = (C + W - 1) / W * W;
  ChannelVector<T> sums(static_cast<size_t>(2 * padded));
  T* s1 = sums.data();
  T* s2 = s1 + padded;
  for (int64_t b0 = r0; b0 < r1; b0 += block) {
    const int64_t b1 = std::min(r1, b0 + block);
    std::fill(sums.begin(), sums.end(), T(0));
    rows_elementwise<T>(b0, b1, C, [&](int64_t i, int64_t c, auto k) {
      V v1 = V::loadu(s1 + c), v2 = V::loadu(s2 + c);
      f(i, c, k, v1, v2);
      v1.store(s1 + c);
      v2.store(s2 + c);
    });
    end_block(s1, s2);
  }
}

// The merge weights of the row block [b0, b1) into the moments of the rows
// [r0, b0) before it: 1/b, b/(n + b) and n·b/(n + b) for n rows before, b in it.
struct BlockWeights {
  double inv_b, w_mean, w_m2;
  BlockWeights(int64_t r0, int64_t b0, int64_t b1) {
    const double b = static_cast<double>(b1 - b0);
    const double before = static_cast<double>(b0 - r0);
    inv_b = 1.0 / b;
    w_mean = b / (before + b);
    w_m2 = before * b / (before + b);
  }
};

// f(r, std::integral_constant<int, U>{}) for r = b0, b0 + U, … while U rows
// fit before b1, then f(r, std::integral_constant<int, 1>{}) for each row left.
template <int U, typename F>
C10_ALWAYS_INLINE void for_row_groups(int64_t b0, int64_t b1, F&& f) {
  int64_t r = b0;
  for (; r + U <= b1; r += U) f(r, std::integral_constant<int, U>{});
  for (; r < b1; ++r) f(r, std::integral_constant<int, 1>{});
}

// s[0][j] + s[1][j] + … + s[U − 1][j], in that order: the U side-by-side sums of vector j.
template <int U, int N, typename V>
C10_ALWAYS_INLINE V sum_row_groups(const V (&s)[U][N], int j) {
  V total = s[0][j];
  for (int u = 1; u < U; ++u) total = total + s[u][j];
  return total;
}

// rows_moments for rows of N ≤ kMaxRegisterRowVectors vectors, row by row in
// memory order with every sum in registers; U rows side by side keep four or
// more independent sums per pass.
template <typename T, int N>
void register_rows_moments(const T* x, int64_t r0, int64_t r1, int64_t C, double* mean, double* m2) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  constexpr int U = register_row_unroll(N);
  const int64_t tail = C - (N - 1) * W;
  const int64_t block_rows = std::max<int64_t>(kMinBlockRows, kRowBlockElements / C);
  for (int64_t b0 = r0; b0 < r1; b0 += block_rows) {
    const int64_t b1 = std::min(r1, b0 + block_rows);
    const BlockWeights bw(r0, b0, b1);
    // Pass 1: the block's sums, whose mean (the shift) centers pass 2.
    V s[U][N];
    for (int u = 0; u < U; ++u) for_each_index<N>([&](auto j) { s[u][j] = V(T(0)); });
    auto add_rows = [&](int64_t r, auto rows) {
      for_each_index<decltype(rows)::value>([&](auto u) {
        register_row<T, N>(r + u, C, tail,
                           [&](int64_t i, int64_t, auto k, auto j) { s[u][j] = s[u][j] + load(x + i, k); });
      });
    };
    for_row_groups<U>(b0, b1, add_rows);
    alignas(64) T shift[N * W];
    for_each_index<N>([&](auto j) { sum_row_groups(s, j).store(shift + j * W); });
    // Lanes past C summed zeros and stay zero.
    for (int64_t c = 0; c < C; ++c) shift[c] = static_cast<T>(static_cast<double>(shift[c]) * bw.inv_b);
    V sh[N];
    for_each_index<N>([&](auto j) { sh[j] = V::loadu(shift + j * W); });
    // Pass 2 (from L1): Σ(x − shift) and Σ(x − shift)². Lanes past C load zero
    // and subtract a zero shift.
    V p1[U][N], p2[U][N];
    for (int u = 0; u < U; ++u) for_each_index<N>([&](auto j) { p1[u][j] = p2[u][j] = V(T(0)); });
    auto center_rows = [&](int64_t r, auto rows) {
      for_each_index<decltype(rows)::value>([&](auto u) {
        register_row<T, N>(r + u, C, tail, [&](int64_t i, int64_t, auto k, auto j) {
          const V v = load(x + i, k) - sh[j];
          p1[u][j] = p1[u][j] + v;
          p2[u][j] = at::vec::fmadd(v, v, p2[u][j]);
        });
      });
    };
    for_row_groups<U>(b0, b1, center_rows);
    alignas(64) T l1[N * W], l2[N * W];
    for_each_index<N>([&](auto j) {
      sum_row_groups(p1, j).store(l1 + j * W);
      sum_row_groups(p2, j).store(l2 + j * W);
    });
    for (int64_t c = 0; c < C; ++c) {
      merge_block_moments(static_cast<double>(shift[c]), static_cast<double>(l1[c]), static_cast<double>(l2[c]),
                          bw.inv_b, bw.w_mean, bw.w_m2, mean[c], m2[c]);
    }
  }
}

// Per-channel moments of rows [r0, r1), merged into acc[0..C): per row block,
// each channel's block mean (first pass) centers the second. Every channel sees
// the same rows, so the running moments are kept as arrays (mean, m2) whose
// merge weights are scalars shared by all lanes: with n rows before the block
// and b in it, mean += δ·b/(n + b) and m2 += m2_b + δ²·n·b/(n + b), δ = mean_b − mean
// (Chan et al.), no division per channel. acc gets one merge per channel.
//
// Rows of up to kMaxRegisterRowVectors vectors go row by row in memory order
// with their sums in registers (register_rows_moments). Wider rows go row by
// row into L1-resident per-channel sums: walking down a W-channel column there
// strides by C values (4 KB at C = 1024 floats, where every row of the column
// falls in one L1 set), and a block of rows outgrows L1 before the column's
// second pass.
template <typename T>
void rows_moments(const T* x, int64_t r0, int64_t r1, int64_t C, Moments* acc) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  std::vector<double> mean(static_cast<size_t>(C), 0.0), m2(static_cast<size_t>(C), 0.0);
  const bool in_registers = with_register_row<T>(C, [&](auto n) {
    register_rows_moments<T, decltype(n)::value>(x, r0, r1, C, mean.data(), m2.data());
  });
  if (!in_registers) {
    const int64_t block_rows = std::max<int64_t>(kMinBlockRows, kRowBlockElements / C);
    const int64_t padded = (C + W - 1) / W * W;
    // shift (the block's first-pass mean), Σ(x − shift), Σ(x − shift)²; the
    // padding lanes stay zero (partial loads zero them), so they add nothing.
    ChannelVector<T> sums(static_cast<size_t>(3 * padded));
    T* shift = sums.data();
    T* p1 = shift + padded;
    T* p2 = p1 + padded;
    for (int64_t b0 = r0; b0 < r1; b0 += block_rows) {
      const int64_t b1 = std::min(r1, b0 + block_rows);
      const BlockWeights bw(r0, b0, b1);
      std::fill(sums.begin(), sums.end(), T(0));
      rows_elementwise<T>(b0, b1, C, [&](int64_t i, int64_t c, auto k) {
        (V::loadu(shift + c) + load(x + i, k)).store(shift + c);
      });
      for (int64_t c = 0; c < C; ++c) shift[c] = static_cast<T>(static_cast<double>(shift[c]) * bw.inv_b);
      rows_elementwise<T>(b0, b1, C, [&](int64_t i, int64_t c, auto k) {
        const V v = load(x + i, k) - V::loadu(shift + c);
        (V::loadu(p1 + c) + v).store(p1 + c);
        at::vec::fmadd(v, v, V::loadu(p2 + c)).store(p2 + c);
      });
      for (int64_t c = 0; c < C; ++c) {
        const auto j = static_cast<size_t>(c);
        merge_block_moments(static_cast<double>(shift[c]), static_cast<double>(p1[c]), static_cast<double>(p2[c]),
                            bw.inv_b, bw.w_mean, bw.w_m2, mean[j], m2[j]);
      }
    }
  }
  const double rows = static_cast<double>(r1 - r0);
  for (int64_t c = 0; c < C; ++c) acc[c].merge(rows, mean[static_cast<size_t>(c)], m2[static_cast<size_t>(c)]);
}

template <typename T>
void minor_moments(const T* x, const BatchNormLayout& L, std::vector<Moments>& out) {
  const int64_t C = L.channels;
  const int threads = at::get_num_threads();
  std::vector<Moments> partial(static_cast<size_t>(threads * C));
  const int64_t grain = std::max<int64_t>(1, kGrainElements / C);
  at::parallel_for(0, L.outer, grain, [&](int64_t begin, int64_t end) {
    rows_moments(x, begin, end, C, partial.data() + at::get_thread_num() * C);
  });
  out.assign(static_cast<size_t>(C), Moments{});
  for (int t = 0; t < threads; ++t) {
    for (int64_t c = 0; c < C; ++c) out[static_cast<size_t>(c)].merge(partial[static_cast<size_t>(t * C + c)]);
  }
}

}  // inline namespace CPU_CAPABILITY
}  // namespace bnlab::kernels::cpu
