#include "bnlab/nn/probe.h"

#include <torch/torch.h>

#include <algorithm>
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
// out[0..ranks.size()). Most-significant-digit radix selection: a histogram of
// the top 12 bits (sign, exponent and 3 mantissa bits: buckets an eighth of an
// octave wide), one pass that gathers the buckets holding a wanted rank, and
// the same again on each gathered bucket with the next digit; buckets small
// enough are sorted. Exact; two passes over the data for typical activations.
void select_ranks(const uint32_t* keys, size_t n, int level, const size_t* ranks, size_t num_ranks, uint32_t* out) {
  static constexpr int kShift[] = {20, 8, 0};
  static constexpr uint32_t kDigits[] = {4096, 4096, 256};
  if (n <= 128 || level == 3) {
    std::vector<uint32_t> sorted(keys, keys + n);
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < num_ranks; ++i) out[i] = sorted[ranks[i]];
    return;
  }
  const int shift = kShift[level];
  const uint32_t digits = kDigits[level];
  std::vector<uint32_t> counts(digits, 0);
  for (size_t i = 0; i < n; ++i) ++counts[(keys[i] >> shift) & (digits - 1)];
  // The buckets holding a wanted rank: their first rank and the rank offset.
  std::vector<int16_t> slot_of(digits, -1);
  std::vector<size_t> first_rank, bucket_start;
  size_t start = 0;
  size_t next = 0;
  for (uint32_t b = 0; b < digits && next < num_ranks; ++b) {
    const size_t end = start + counts[b];
    if (ranks[next] < end) {
      slot_of[b] = static_cast<int16_t>(first_rank.size());
      first_rank.push_back(next);
      bucket_start.push_back(start);
      while (next < num_ranks && ranks[next] < end) ++next;
    }
    start = end;
  }
  first_rank.push_back(num_ranks);
  // One pass gathers every wanted bucket.
  std::vector<std::vector<uint32_t>> buckets(bucket_start.size());
  for (size_t i = 0; i < n; ++i) {
    const int slot = slot_of[(keys[i] >> shift) & (digits - 1)];
    if (slot >= 0) buckets[static_cast<size_t>(slot)].push_back(keys[i]);
  }
  std::vector<size_t> local;
  for (size_t k = 0; k < buckets.size(); ++k) {
    local.clear();
    for (size_t r = first_rank[k]; r < first_rank[k + 1]; ++r) local.push_back(ranks[r] - bucket_start[k]);
    select_ranks(buckets[k].data(), buckets[k].size(), level + 1, local.data(), local.size(), out + first_rank[k]);
  }
}

}  // namespace

std::vector<double> sample_quantiles(const float* sample, int64_t count, const std::vector<double>& qs) {
  std::vector<double> out(qs.size(), std::nan(""));
  if (count <= 0) return out;
  std::vector<uint32_t> keys(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    if (std::isnan(sample[i])) return out;
    keys[static_cast<size_t>(i)] = sortable_key(sample[i]);
  }
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
  select_ranks(keys.data(), keys.size(), 0, ranks.data(), ranks.size(), selected.data());
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
