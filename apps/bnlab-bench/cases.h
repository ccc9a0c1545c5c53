// The comparisons bnlab-bench runs (see README, "Performance").
#pragma once

#include "bnlab-bench/interleaved.h"

#include <functional>
#include <string>
#include <vector>

namespace bnlab::bench {

struct BenchConfig {
  InterleaveOptions interleave;
  bool quick = false;          ///< smaller shapes and fewer rounds (CI: it must run, not be precise)
  int threads = 0;             ///< torch intra-op threads (0: torch's default)
  std::string python;          ///< interpreter with torch for the eager-PyTorch comparison
  std::string python_script;   ///< apps/bnlab-bench/python_step.py
  std::string work_dir;        ///< where the recorder's sinks write
};

/// A named comparison, run when its benchmark is selected.
struct Case {
  std::string name;
  std::function<Comparison()> run;
};

/// bnlab BatchNorm vs torch::batch_norm (train fwd+bwd per shape, eval),
/// BatchNormAct(tanh) vs batch_norm + tanh, and bandwidth against a copy.
std::vector<Case> kernel_cases(const BenchConfig& config);

/// The recorder's overhead on the makemore-style MLP, and a bnlab-train
/// training step against the same model in eager PyTorch (Python).
std::vector<Case> training_cases(const BenchConfig& config);

}  // namespace bnlab::bench
