#include "bnlab-bench/interleaved.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace bnlab::bench {

Side timed(std::function<void()> work) {
  return [work = std::move(work)](int64_t reps) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < reps; ++i) work();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
}

double median(std::vector<double> values) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

Comparison compare(const std::string& name, const LabelledSide& ours, const LabelledSide& theirs, double goal,
                   const InterleaveOptions& options) {
  auto c = interleave(name, ours.side, theirs.side, options);
  c.ours = ours.label;
  c.theirs = theirs.label;
  c.goal = goal;
  return c;
}

Comparison interleave(const std::string& name, const Side& ours, const Side& theirs,
                      const InterleaveOptions& options) {
  Comparison c;
  c.name = name;
  ours(options.warmup);
  theirs(options.warmup);
  // Enough reps that a round of `ours` is long against the clock's resolution
  // and the scheduler's time slice.
  int64_t reps = 1;
  for (double t = ours(reps); t < options.min_round_s && reps < (int64_t{1} << 20);) {
    reps = std::max<int64_t>(reps * 2, static_cast<int64_t>(reps * options.min_round_s / std::max(t, 1e-9)));
    t = ours(reps);
  }
  std::vector<double> ours_t, theirs_t, ratios;
  for (int r = 0; r < options.rounds; ++r) {
    double a = 0, b = 0;
    if (r % 2 == 0) {
      a = ours(reps);
      b = theirs(reps);
    } else {
      b = theirs(reps);
      a = ours(reps);
    }
    ours_t.push_back(a / static_cast<double>(reps));
    theirs_t.push_back(b / static_cast<double>(reps));
    ratios.push_back(a / b);
  }
  c.ours_s = median(ours_t);
  c.theirs_s = median(theirs_t);
  c.ratio = median(ratios);
  c.ratio_low = *std::min_element(ratios.begin(), ratios.end());
  c.ratio_high = *std::max_element(ratios.begin(), ratios.end());
  return c;
}

}  // namespace bnlab::bench
