// Per-thread double sums of one parallel pass, kept inline for up to 16
// threads. The kernels that gather the recorder's statistics run on every
// recorded step, and a heap allocation per call was a visible part of a small
// layer's cost. Included only from kernel sources.
#pragma once

#include <algorithm>
#include <array>
#include <vector>

namespace bnlab::kernels::cpu {

/// N double sums per thread, zeroed; thread t's are (*this)[t].
template <int N>
class PerThreadSums {
 public:
  explicit PerThreadSums(int threads) : threads_(std::max(threads, 1)) {
    if (threads_ > static_cast<int>(small_.size())) large_.resize(static_cast<size_t>(threads_));
    for (int t = 0; t < threads_; ++t) (*this)[t].fill(0.0);
  }
  PerThreadSums(const PerThreadSums&) = delete;
  PerThreadSums& operator=(const PerThreadSums&) = delete;

  std::array<double, N>& operator[](int t) { return large_.empty() ? small_[t] : large_[static_cast<size_t>(t)]; }
  const std::array<double, N>& operator[](int t) const {
    return large_.empty() ? small_[t] : large_[static_cast<size_t>(t)];
  }
  /// The sums over all threads.
  std::array<double, N> total() const {
    std::array<double, N> out{};
    for (int t = 0; t < threads_; ++t) {
      for (int k = 0; k < N; ++k) out[k] += (*this)[t][k];
    }
    return out;
  }

 private:
  int threads_;
  std::array<std::array<double, N>, 16> small_;
  std::vector<std::array<double, N>> large_;
};

}  // namespace bnlab::kernels::cpu
