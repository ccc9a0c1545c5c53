// Side-by-side timing on a noisy machine: the two sides run in alternating
// rounds (A B, B A, A B, ...), so drift and background load hit both alike,
// and the result is the median over rounds.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bnlab::bench {

/// Runs one side's unit of work `reps` times and returns the seconds it took.
using Side = std::function<double(int64_t reps)>;

/// A Side from a callable timed with a steady clock.
Side timed(std::function<void()> work);

struct InterleaveOptions {
  int rounds = 15;             ///< measured rounds per side
  int warmup = 3;              ///< untimed calls of each side first
  double min_round_s = 0.04;   ///< each round runs enough reps of `ours` to take this long
};

/// One comparison's outcome; times are per call (one rep).
struct Comparison {
  std::string name;
  std::string ours;    ///< what the first side is
  std::string theirs;  ///< what it is compared with
  double goal = 0;     ///< the ratio to stay at or under (0: none, informational)
  double ours_s = 0;   ///< median over rounds
  double theirs_s = 0;
  double ratio = 0;    ///< median over rounds of ours/theirs in the same round
  double ratio_low = 0, ratio_high = 0;  ///< the rounds' smallest and largest ratio
  std::string extra;   ///< e.g. achieved bandwidth
  std::string error;   ///< set when the comparison could not run
};

/// Measures `ours` against `theirs` in alternating rounds.
Comparison interleave(const std::string& name, const Side& ours, const Side& theirs,
                      const InterleaveOptions& options);

/// One side of a comparison and what it is.
struct LabelledSide {
  std::string label;
  Side side;
};

/// interleave(), with both sides' labels and the goal filled in.
Comparison compare(const std::string& name, const LabelledSide& ours, const LabelledSide& theirs, double goal,
                   const InterleaveOptions& options);

double median(std::vector<double> values);

}  // namespace bnlab::bench
