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

// The order statistics at `ranks` (ascending) of keys[0..n), by most-significant-
// digit radix selection: one 256-bucket histogram per byte, descending only into
// the buckets that hold a wanted rank. Exact, and O(n) with a small constant.
void select_ranks(const uint32_t* keys, size_t n, int shift, const std::vector<size_t>& ranks,
                  std::vector<uint32_t>& out) {
  if (n <= 64 || shift < 0) {
    std::vector<uint32_t> sorted(keys, keys + n);
    std::sort(sorted.begin(), sorted.end());
    for (size_t r : ranks) out.push_back(sorted[r]);
    return;
  }
  size_t counts[256] = {0};
  for (size_t i = 0; i < n; ++i) ++counts[(keys[i] >> shift) & 0xFFU];
  // The buckets holding a wanted rank, and the ranks relative to each.
  int slot_of[256];
  std::fill(std::begin(slot_of), std::end(slot_of), -1);
  std::vector<std::vector<size_t>> inside;
  std::vector<std::vector<uint32_t>> buckets;
  size_t start = 0;
  size_t next = 0;
  for (int b = 0; b < 256 && next < ranks.size(); ++b) {
    const size_t end = start + counts[b];
    if (next < ranks.size() && ranks[next] < end) {
      slot_of[b] = static_cast<int>(inside.size());
      inside.emplace_back();
      while (next < ranks.size() && ranks[next] < end) inside.back().push_back(ranks[next++] - start);
      buckets.emplace_back();
      buckets.back().reserve(counts[b]);
    }
    start = end;
  }
  // One pass distributes the elements of the wanted buckets.
  for (size_t i = 0; i < n; ++i) {
    const int slot = slot_of[(keys[i] >> shift) & 0xFFU];
    if (slot >= 0) buckets[static_cast<size_t>(slot)].push_back(keys[i]);
  }
  for (size_t k = 0; k < buckets.size(); ++k) {
    select_ranks(buckets[k].data(), buckets[k].size(), shift - 8, inside[k], out);
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
  std::vector<size_t> ranks;
  std::vector<double> positions(qs.size());
  for (size_t k = 0; k < qs.size(); ++k) {
    positions[k] = std::clamp(qs[k], 0.0, 1.0) * static_cast<double>(count - 1);
    const auto lo = static_cast<size_t>(std::floor(positions[k]));
    ranks.push_back(lo);
    ranks.push_back(std::min(lo + 1, static_cast<size_t>(count - 1)));
  }
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  std::vector<uint32_t> selected;
  select_ranks(keys.data(), keys.size(), 24, ranks, selected);
  auto value_at = [&](size_t rank) {
    const auto it = std::lower_bound(ranks.begin(), ranks.end(), rank);
    return static_cast<double>(key_value(selected[static_cast<size_t>(it - ranks.begin())]));
  };
  for (size_t k = 0; k < qs.size(); ++k) {
    const auto lo = static_cast<size_t>(std::floor(positions[k]));
    const double a = value_at(lo);
    const double b = value_at(std::min(lo + 1, static_cast<size_t>(count - 1)));
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
