// Vectorized CPU kernels of the elementwise activations. Compiled once per CPU
// capability (see dispatch.h); everything here lives in that capability's namespace.
#include "kernels/cpu/activation_kernel.h"

#include "bnlab/nn/probe.h"
#include "kernels/cpu/activation_ops.h"
#include "kernels/cpu/vec_helpers.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <vector>

namespace bnlab::kernels::cpu {
inline namespace CPU_CAPABILITY {

namespace {

using at::vec::Vectorized;
namespace slot = nn::activation_stat;

// ---- forward ----------------------------------------------------------------

constexpr int64_t kGrainElements = 32768;

// y = f(x) over n contiguous elements, whole vectors and a masked tail.
template <typename T, typename Op>
inline void apply_forward(const T* x, T* y, int64_t n, const Op& op) {
  using V = Vectorized<T>;
  int64_t i = 0;
  for (; i + V::size() <= n; i += V::size()) op.forward(V::loadu(x + i)).store(y + i);
  if (i < n) store_partial(op.forward(load_partial(x + i, n - i)), y + i, n - i);
}

template <typename T, typename Op>
void forward_plain(const T* x, T* y, int64_t n, const Op& op) {
  at::parallel_for(0, n, kGrainElements, [&](int64_t begin, int64_t end) {
    apply_forward(x + begin, y + begin, end - begin, op);
  });
}

// Per-thread scratch reused across calls: this kernel runs on every recorded step.
template <typename T>
std::vector<T>& alive_scratch(size_t size) {
  static thread_local std::vector<T> scratch;
  scratch.assign(size, T(0));
  return scratch;
}

// Elements per chunk of the recording forward: f is applied to a chunk as one
// contiguous run (as in the plain forward), then the chunk's statistics are
// counted from x and y while both are still in L1. Interleaving f with the
// counting per vector costs more: where f is an out-of-line call (Sleef's exp,
// erf, ...) it clobbers the vector registers holding the running sums.
constexpr int64_t kChunkElements = 2048;

template <typename T, typename Op>
void forward_with_stats(const T* x, T* y, const UnitLayout& layout, const Op& op, double* stats) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const int64_t units = layout.units;
  const int num_threads = at::get_num_threads();
  ForwardSums acc(num_threads);
  // alive[t * units + c] = 1 once thread t saw an unsaturated element of unit c.
  auto& alive = alive_scratch<T>(static_cast<size_t>(num_threads * units));
  const V one(T(1));
  const V all_set = V(T(0)) == V(T(0));

  if (layout.inner > 1) {
    // Blocks of `inner` contiguous elements of one unit; chunks of whole blocks.
    const int64_t blocks = layout.outer * units;
    const int64_t inner = layout.inner;
    const int64_t full = inner - inner % W;
    const V tail_mask = lane_mask<T>(inner - full);
    const int64_t blocks_per_chunk = std::max<int64_t>(1, kChunkElements / inner);
    const int64_t grain = std::max<int64_t>(1, kGrainElements / inner);
    at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
      const int t = at::get_thread_num();
      // A local accumulator (kept in registers), added to the thread's slot at the end.
      ForwardTotals<T> a;
      T* alive_t = alive.data() + t * units;
      for (int64_t chunk = begin; chunk < end; chunk += blocks_per_chunk) {
        const int64_t chunk_end = std::min(end, chunk + blocks_per_chunk);
        apply_forward(x + chunk * inner, y + chunk * inner, (chunk_end - chunk) * inner, op);
        for (int64_t b = chunk; b < chunk_end; ++b) {
          const T* xp = x + b * inner;
          const T* yp = y + b * inner;
          V all_sat = all_set;  // lane mask: saturated at every element so far
          for (int64_t i = 0; i < full; i += W) {
            all_sat = all_sat & a.add_full(op, V::loadu(xp + i), V::loadu(yp + i));
          }
          if (full < inner) {
            const int64_t count = inner - full;
            // Lanes outside the data count as saturated: they must not keep a unit alive.
            all_sat = all_sat & a.add_masked(op, load_partial(xp + full, count), load_partial(yp + full, count), tail_mask);
          }
          if (horizontal_max(V::blendv(one, V(T(0)), all_sat)) == T(1)) alive_t[b % units] = T(1);
        }
      }
      add_thread_totals(acc, a);
    });
  } else {
    // Rows of `units` elements, one per unit; chunks of whole rows. Blocks of
    // W units walk down a chunk's rows, so each lane keeps its unit and only
    // the last block is masked.
    const int64_t full = units - units % W;
    const V tail_mask = lane_mask<T>(units - full);
    const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkElements / std::max<int64_t>(units, 1));
    const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(units, 1));
    at::parallel_for(0, layout.outer, grain, [&](int64_t begin, int64_t end) {
      const int t = at::get_thread_num();
      // A local accumulator (kept in registers), added to the thread's slot at the end.
      ForwardTotals<T> a;
      T* alive_t = alive.data() + t * units;
      // alive ← max(alive, 1 where a lane was ever unsaturated)
      auto mark_alive = [&](T* where, V all_sat, int64_t count) {
        const V unsat = V::blendv(one, V(T(0)), all_sat);
        if (count == W) {
          at::vec::maximum(V::loadu(where), unsat).store(where);
        } else {
          store_partial(at::vec::maximum(load_partial(where, count), unsat), where, count);
        }
      };
      for (int64_t chunk = begin; chunk < end; chunk += rows_per_chunk) {
        const int64_t chunk_end = std::min(end, chunk + rows_per_chunk);
        apply_forward(x + chunk * units, y + chunk * units, (chunk_end - chunk) * units, op);
        for (int64_t c = 0; c < full; c += W) {
          V all_sat = all_set;
          for (int64_t r = chunk; r < chunk_end; ++r) {
            all_sat = all_sat & a.add_full(op, V::loadu(x + r * units + c), V::loadu(y + r * units + c));
          }
          mark_alive(alive_t + c, all_sat, W);
        }
        if (full < units) {
          const int64_t count = units - full;
          V all_sat = all_set;
          for (int64_t r = chunk; r < chunk_end; ++r) {
            all_sat = all_sat & a.add_masked(op, load_partial(x + r * units + full, count),
                                             load_partial(y + r * units + full, count), tail_mask);
          }
          mark_alive(alive_t + full, all_sat, count);
        }
      }
      add_thread_totals(acc, a);
    });
  }

  int64_t alive_units = 0;
  for (int64_t c = 0; c < units; ++c) {
    bool any = false;
    for (int t = 0; t < num_threads && !any; ++t) any = alive[static_cast<size_t>(t * units + c)] > T(0);
    alive_units += any ? 1 : 0;
  }
  finish_forward_stats(acc, static_cast<double>(units - alive_units), y, layout.outer * units * layout.inner, stats);
}

void activation_forward_kernel(const at::Tensor& input, const at::Tensor& output,
                               const ActivationParams& params, const UnitLayout& layout,
                               double* stats) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "bnlab_activation_forward", [&] {
    const auto* x = input.data_ptr<scalar_t>();
    auto* y = output.data_ptr<scalar_t>();
    with_op<scalar_t>(params, [&](const auto& op) {
      if (stats == nullptr) {
        forward_plain(x, y, input.numel(), op);
      } else {
        forward_with_stats(x, y, layout, op, stats);
      }
    });
  });
}

// ---- backward ---------------------------------------------------------------

void activation_backward_kernel(const at::Tensor& grad_output, const at::Tensor& saved,
                                const at::Tensor& grad_input, const ActivationParams& params,
                                double* stats) {
  AT_DISPATCH_FLOATING_TYPES(saved.scalar_type(), "bnlab_activation_backward", [&] {
    using T = scalar_t;
    using V = Vectorized<T>;
    constexpr int64_t W = V::size();
    const auto* gy = grad_output.data_ptr<T>();
    const auto* v = saved.data_ptr<T>();
    auto* gx = grad_input.data_ptr<T>();
    const int64_t n = saved.numel();
    const int num_threads = at::get_num_threads();
    PerThreadSums<2> sums(num_threads);
    with_op<T>(params, [&](const auto& op) {
      at::parallel_for(0, n, kGrainElements, [&](int64_t begin, int64_t end) {
        const V zero(T(0));
        V gy2(T(0)), gx2(T(0));
        int64_t pending = 0;
        auto& s = sums[at::get_thread_num()];
        int64_t i = begin;
        for (; i + W <= end; i += W) {
          const V g = V::loadu(gy + i);
          const V r = g * op.derivative(V::loadu(v + i));
          r.store(gx + i);
          if (stats != nullptr) {
            gy2 = gy2 + g * g;
            gx2 = gx2 + r * r;
            if (++pending == kFlushVectors) {
              s[0] += horizontal_sum(gy2);
              s[1] += horizontal_sum(gx2);
              gy2 = gx2 = zero;
              pending = 0;
            }
          }
        }
        if (i < end) {
          const int64_t count = end - i;
          const V g = load_partial(gy + i, count);
          const V r = g * op.derivative(load_partial(v + i, count));
          store_partial(r, gx + i, count);
          if (stats != nullptr) {
            const V valid = lane_mask<T>(count);
            gy2 = gy2 + V::blendv(zero, g * g, valid);
            gx2 = gx2 + V::blendv(zero, r * r, valid);
          }
        }
        if (stats != nullptr) {
          s[0] += horizontal_sum(gy2);
          s[1] += horizontal_sum(gx2);
        }
      });
    });
    if (stats != nullptr) {
      const std::array<double, 2> totals = sums.total();
      stats[slot::kGradOutputSumSq] = totals[0];
      stats[slot::kGradInputSumSq] = totals[1];
      // Rare path: count the non-finite gradients only when the sum says there are some.
      double nonfinite = 0.0;
      if (!std::isfinite(totals[1])) {
        for (int64_t i = 0; i < n; ++i) nonfinite += std::isfinite(gx[i]) ? 0.0 : 1.0;
      }
      stats[slot::kNonFiniteGradInput] = nonfinite;
    }
  });
}

}  // namespace

}  // inline namespace CPU_CAPABILITY

BNLAB_REGISTER_KERNEL(activation_forward_stub, activation_forward_kernel);
BNLAB_REGISTER_KERNEL(activation_backward_stub, activation_backward_kernel);

}  // namespace bnlab::kernels::cpu
