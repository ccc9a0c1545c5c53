#include "bnlab/nn/probe.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

namespace bnlab::nn {

namespace {

// Floats as unsigned keys that sort like the floats (NaN excluded).
uint32_t sortable_key(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return (u & 0x80000000U) != 0 ? ~u : (u | 0x80000000U);
}

float key_value(uint32_t k) {
  const uint32_t u = (k & 0x80000000U) != 0 ? (k & 0x7FFFFFFFU) : ~k;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// The order statistics at `ranks` (ascending, distinct) of keys, written to
// out[0..num_ranks), num_ranks ≤ kMaxRanks. Most-significant-digit radix
// selection: a histogram of the top 12 bits (sign, exponent and 3 mantissa
// bits: buckets an eighth of an octave wide), one pass that gathers the
// buckets holding a wanted rank into one array, and the same again on each
// gathered bucket with the next digit; small enough inputs and buckets are
// selected directly (kDirectSelection). Exact;
// two passes over the data for typical activations. The recorder's writer
// calls it for every activation layer on every step, so the per-level arrays
// are reused (thread-local) rather than allocated per call: for 3200 values
// that took sample_quantiles from 14.7 to 12.0 µs.
constexpr size_t kMaxRanks = 64;

// Up to this many keys, nth_element on the keys beats a radix level, whose
// cost is mostly clearing its 4096 counts and slots: for the recorder's
// default sample (at most 1024 values) a 458-value selection of three
// quantiles took 2.7 µs through the radix levels and 1.4 µs directly.
constexpr size_t kDirectSelection = 1024;

void select_ranks(const uint32_t* keys, size_t n, int level, const size_t* ranks, size_t num_ranks, uint32_t* out) {
  static constexpr int kShift[] = {20, 8, 0};
  static constexpr uint32_t kDigits[] = {4096, 4096, 256};
  if (n <= kDirectSelection || level == 3) {
    // Small enough to select directly: each wanted rank by nth_element on what
    // lies past the previous one (ranks ascend), cheaper than sorting all.
    thread_local std::vector<uint32_t> part;
    part.assign(keys, keys + n);
    auto from = part.begin();
    for (size_t i = 0; i < num_ranks; ++i) {
      const auto at = part.begin() + static_cast<std::ptrdiff_t>(ranks[i]);
      std::nth_element(from, at, part.end());
      out[i] = *at;
      from = at + 1;
    }
    return;
  }
  struct Scratch {
    std::vector<uint32_t> counts;
    std::vector<uint32_t> gathered;
    std::vector<int16_t> slot_of;
  };
  thread_local std::array<Scratch, 3> scratch;
  auto& s = scratch[static_cast<size_t>(level)];
  const int shift = kShift[level];
  const uint32_t digits = kDigits[level];
  s.counts.assign(digits, 0);
  for (size_t i = 0; i < n; ++i) ++s.counts[(keys[i] >> shift) & (digits - 1)];
  // The buckets holding a wanted rank: the first of their ranks, where they
  // start in the sorted order, and where they go in `gathered`.
  s.slot_of.assign(digits, -1);
  std::array<size_t, kMaxRanks + 1> first_rank{}, bucket_start{}, gathered_at{};
  size_t wanted = 0, start = 0, next = 0, gathered_size = 0;
  for (uint32_t b = 0; b < digits && next < num_ranks; ++b) {
    const size_t end = start + s.counts[b];
    if (ranks[next] < end) {
      s.slot_of[b] = static_cast<int16_t>(wanted);
      first_rank[wanted] = next;
      bucket_start[wanted] = start;
      gathered_at[wanted] = gathered_size;
      gathered_size += s.counts[b];
      ++wanted;
      while (next < num_ranks && ranks[next] < end) ++next;
    }
    start = end;
  }
  first_rank[wanted] = num_ranks;
  gathered_at[wanted] = gathered_size;
  // One pass gathers every wanted bucket.
  s.gathered.resize(gathered_size);
  auto fill = gathered_at;  // each wanted bucket's next free place in `gathered`
  for (size_t i = 0; i < n; ++i) {
    const int slot = s.slot_of[(keys[i] >> shift) & (digits - 1)];
    if (slot >= 0) s.gathered[fill[static_cast<size_t>(slot)]++] = keys[i];
  }
  std::array<size_t, kMaxRanks> local{};
  for (size_t k = 0; k < wanted; ++k) {
    size_t m = 0;
    for (size_t r = first_rank[k]; r < first_rank[k + 1]; ++r) local[m++] = ranks[r] - bucket_start[k];
    select_ranks(s.gathered.data() + gathered_at[k], gathered_at[k + 1] - gathered_at[k], level + 1, local.data(), m,
                 out + first_rank[k]);
  }
}

}  // namespace

std::vector<double> sample_quantiles(const float* sample, int64_t count, const std::vector<double>& qs) {
  std::vector<double> out(qs.size(), std::nan(""));
  if (count <= 0) return out;
  std::vector<uint32_t> keys(static_cast<size_t>(count));
  // Branch-free, so it vectorizes; a NaN anywhere makes every quantile NaN.
  bool any_nan = false;
  for (int64_t i = 0; i < count; ++i) {
    any_nan |= std::isnan(sample[i]);
    keys[static_cast<size_t>(i)] = sortable_key(sample[i]);
  }
  if (any_nan) return out;
  // torch.quantile's definition: linear interpolation at position q·(n − 1),
  // between the order statistics lo = ⌊pos⌋ and lo + 1.
  const auto last = static_cast<size_t>(count - 1);
  std::vector<double> positions(qs.size());
  std::vector<size_t> ranks;
  for (size_t k = 0; k < qs.size(); ++k) {
    positions[k] = std::clamp(qs[k], 0.0, 1.0) * static_cast<double>(last);
    const auto lo = static_cast<size_t>(std::floor(positions[k]));
    ranks.push_back(lo);
    ranks.push_back(std::min(lo + 1, last));
  }
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  std::vector<uint32_t> selected(ranks.size());
  // select_ranks keeps its per-bucket bookkeeping in fixed arrays of kMaxRanks.
  for (size_t first = 0; first < ranks.size(); first += kMaxRanks) {
    select_ranks(keys.data(), keys.size(), 0, ranks.data() + first, std::min(kMaxRanks, ranks.size() - first),
                 selected.data() + first);
  }
  auto value_at = [&](size_t rank) {
    const auto it = std::lower_bound(ranks.begin(), ranks.end(), rank);
    return static_cast<double>(key_value(selected[static_cast<size_t>(it - ranks.begin())]));
  };
  for (size_t k = 0; k < qs.size(); ++k) {
    const auto lo = static_cast<size_t>(std::floor(positions[k]));
    const double a = value_at(lo);
    const double b = value_at(std::min(lo + 1, last));
    out[k] = a + (positions[k] - static_cast<double>(lo)) * (b - a);
  }
  return out;
}

void Probeable::capture(const torch::Tensor& input, const torch::Tensor& output) const {
  if (!probe_) return;
  if (output.grad_fn()) probe_->forward_sequence_nr = static_cast<int64_t>(output.grad_fn()->sequence_nr());
  if (!probe_->capture_tensors) return;
  probe_->input = input.detach();
  probe_->output = output.detach();
  probe_->grad_output = torch::Tensor();
  probe_->grad_input = torch::Tensor();
  if (output.requires_grad()) {
    // A weak reference: the hook must not keep the probe (and its recorder) alive.
    std::weak_ptr<LayerProbe> weak = probe_;
    output.register_hook([weak](const torch::Tensor& grad) {
      if (auto p = weak.lock()) p->grad_output = grad.detach();
    });
  }
  if (input.requires_grad()) {
    std::weak_ptr<LayerProbe> weak = probe_;
    input.register_hook([weak](const torch::Tensor& grad) {
      if (auto p = weak.lock()) p->grad_input = grad.detach();
    });
  }
}

}  // namespace bnlab::nn
