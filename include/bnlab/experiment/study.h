// bnlab-train study: the activation × BatchNorm grid on the same data and seed.
#pragma once

#include <bnlab/experiment/config.h>
#include <bnlab/experiment/run.h>

#include <string>
#include <vector>

namespace bnlab::experiment {

/// The study's defaults: a deep MLP (6 × 128) on the synthetic task (32768
/// training examples), trained from a deliberately poor initial scale (init
/// "gain" 4: weights N(0, 16/fan_in), tanh's pre-activations ~4 wide) with
/// Adam, 1200 steps; one to two minutes for the 14 runs on 2 cores.
StudyConfig default_study_config();

struct StudyResult {
  std::vector<RunSummary> runs;
  double seconds = 0;
  bool interrupted = false;
};

/// Runs every activation × BatchNorm combination into <out>/<run name>/ with
/// the same seed and data, then writes <out>/summary.csv and summary.json
/// (reproducible: no timings), timing.csv and report.html.
StudyResult run_study(const StudyConfig& config);

/// The table bnlab-train prints.
std::string format_study_table(const std::vector<RunSummary>& runs);

}  // namespace bnlab::experiment
