#include "bnlab/nn/probe.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

namespace bnlab::nn {

namespace {

// A float's bits as an unsigned key that sorts like the floats (NaN
// excluded): negatives have every bit flipped, others only the sign bit.
uint32_t sortable_key_bits(uint32_t u) {
  const auto negative = static_cast<uint32_t>(static_cast<int32_t>(u) >> 31);
  return u ^ (negative | 0x80000000U);
}

float key_value(uint32_t k) {
  const uint32_t u = (k & 0x80000000U) != 0 ? (k & 0x7FFFFFFFU) : ~k;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// The order statistics at `ranks` (ascending, distinct) of keys, written to
// out[0..num_ranks), num_ranks ≤ kMaxRanks. Most-significant-digit radix
// selection over the keys' own range: with lo and hi the smallest and largest
// key, bucket b = (key − lo) >> shift holds 2^shift consecutive keys, shift
// chosen so that there are at most 2^digit_bits buckets, about one per key
// (digit_bits between kMinDigitBits and kMaxDigitBits). One pass counts the
// buckets; one copies the keys of the buckets that hold a wanted rank into a
// short array, and one more distributes those to their buckets; each such
// bucket is then selected the same way, its key range at least 2^(digit_bits − 1)
// times narrower. Small inputs are selected directly (kDirectSelection). Exact.
//
// Why not nth_element on everything: its partitions branch on every
// comparison, and on fresh data about half of those branches mispredict.
// Three quantiles of 1,024 new N(0, 1) values took 16 µs that way (2.6 µs
// when the benchmark repeated one input, which the branch predictor learns),
// and the recorder's writer does this for every activation layer on every
// step. The passes here branch per bucket, not per key.
constexpr size_t kMaxRanks = 64;
constexpr int kMinDigitBits = 6;
constexpr int kMaxDigitBits = 11;
// Up to this many keys, nth_element's mispredictions cost no more than a
// level's passes (three quantiles of 458, 1024 and 3200 values took the same
// time, within 5%, with this anywhere from 12 to 48).
constexpr size_t kDirectSelection = 32;
// Each level narrows the key range by 2^(kMinDigitBits − 1) at least, so
// 32-bit keys reach a single key in 7 levels; the last is a backstop.
constexpr int kMaxLevels = 8;

int bit_width(uint64_t v) {
  int w = 0;
  while (v != 0) {
    ++w;
    v >>= 1;
  }
  return w;
}

void select_ranks(const uint32_t* keys, size_t n, int level, const size_t* ranks, size_t num_ranks, uint32_t* out) {
  // (The counts below are 32-bit: larger inputs, 16 GB of floats, are selected directly.)
  if (n <= kDirectSelection || level == kMaxLevels || n > std::numeric_limits<uint32_t>::max()) {
    // Each wanted rank by nth_element on what lies past the previous one (ranks ascend).
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
  uint32_t lo = keys[0];
  uint32_t hi = keys[0];
  for (size_t i = 1; i < n; ++i) {
    lo = std::min(lo, keys[i]);
    hi = std::max(hi, keys[i]);
  }
  if (lo == hi) {
    std::fill(out, out + num_ranks, lo);
    return;
  }
  const int digit_bits = std::clamp(bit_width(n), kMinDigitBits, kMaxDigitBits);
  const int shift = std::max(0, bit_width(hi - lo) - digit_bits);
  const size_t buckets = static_cast<size_t>((hi - lo) >> shift) + 1;
  std::array<uint32_t, size_t{1} << kMaxDigitBits> counts;
  std::fill(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(buckets), 0U);
  for (size_t i = 0; i < n; ++i) ++counts[(keys[i] - lo) >> shift];
  // The buckets holding a wanted rank: the first of their ranks, where they
  // start in the sorted order, and where they go in `gathered`.
  std::array<uint32_t, kMaxRanks + 1> bucket_of{}, first_rank{}, bucket_start{}, gathered_at{};
  size_t wanted = 0, start = 0, next = 0, gathered_size = 0;
  for (size_t b = 0; b < buckets && next < num_ranks; ++b) {
    const size_t end = start + counts[b];
    if (ranks[next] < end) {
      bucket_of[wanted] = static_cast<uint32_t>(b);
      first_rank[wanted] = static_cast<uint32_t>(next);
      bucket_start[wanted] = static_cast<uint32_t>(start);
      gathered_at[wanted] = static_cast<uint32_t>(gathered_size);
      gathered_size += counts[b];
      ++wanted;
      while (next < num_ranks && ranks[next] < end) ++next;
    }
    start = end;
  }
  first_rank[wanted] = static_cast<uint32_t>(num_ranks);
  gathered_at[wanted] = static_cast<uint32_t>(gathered_size);
  thread_local std::array<std::vector<uint32_t>, kMaxLevels> picked_per_level, gathered_per_level;
  auto& picked = picked_per_level[static_cast<size_t>(level)];
  auto& gathered = gathered_per_level[static_cast<size_t>(level)];
  // Pass 1: the keys of wanted buckets, compacted without a branch per key
  // (every key is stored, the index advances only past wanted ones).
  std::array<uint8_t, size_t{1} << kMaxDigitBits> is_wanted;
  std::fill(is_wanted.begin(), is_wanted.begin() + static_cast<std::ptrdiff_t>(buckets), uint8_t{0});
  for (size_t k = 0; k < wanted; ++k) is_wanted[bucket_of[k]] = 1;
  picked.resize(gathered_size + 1);
  uint32_t* p = picked.data();
  size_t taken = 0;
  for (size_t i = 0; i < n; ++i) {
    p[taken] = keys[i];
    taken += is_wanted[(keys[i] - lo) >> shift];
  }
  // Pass 2, over the short array: each key to its bucket's place (with one
  // wanted bucket the short array is that bucket already).
  const uint32_t* g = p;
  if (wanted > 1) {
    gathered.resize(gathered_size);
    std::array<uint8_t, size_t{1} << kMaxDigitBits> slot_of;
    for (size_t k = 0; k < wanted; ++k) slot_of[bucket_of[k]] = static_cast<uint8_t>(k);
    auto fill = gathered_at;  // each wanted bucket's next free place
    for (size_t i = 0; i < gathered_size; ++i) gathered[fill[slot_of[(p[i] - lo) >> shift]]++] = p[i];
    g = gathered.data();
  }
  std::array<size_t, kMaxRanks> local{};
  for (size_t k = 0; k < wanted; ++k) {
    size_t m = 0;
    for (size_t r = first_rank[k]; r < first_rank[k + 1]; ++r) local[m++] = ranks[r] - bucket_start[k];
    select_ranks(g + gathered_at[k], gathered_at[k + 1] - gathered_at[k], level + 1, local.data(), m,
                 out + first_rank[k]);
  }
}

}  // namespace

std::vector<double> sample_quantiles(const float* sample, int64_t count, const std::vector<double>& qs) {
  std::vector<double> out(qs.size(), std::nan(""));
  if (count <= 0) return out;
  thread_local std::vector<uint32_t> keys;
  keys.resize(static_cast<size_t>(count));
  std::memcpy(keys.data(), sample, static_cast<size_t>(count) * sizeof(float));
  // Integer ops only, so that it vectorizes; a NaN anywhere makes every quantile NaN.
  uint32_t nans = 0;
  for (auto& k : keys) {
    nans += (k & 0x7FFFFFFFU) > 0x7F800000U ? 1 : 0;
    k = sortable_key_bits(k);
  }
  const bool any_nan = nans != 0;
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
