// bnlab-train probe: the experiment that motivates BatchNorm.
#pragma once

#include <bnlab/experiment/config.h>
#include <bnlab/train/metrics.h>

namespace bnlab::experiment {

/// One side of the probe (without or with BatchNorm).
struct ProbeSide {
  double saturation_pct = 0;       ///< |tanh| > 0.97
  double preactivation_std = 0;
  train::Histogram preactivations;
  train::Histogram outputs;        ///< over tanh's range [−1, 1]
};

struct ProbeResult {
  ProbeSide without_batch_norm;
  ProbeSide with_batch_norm;
};

/// tanh(x·W) for `inputs` random N(0, 1) inputs of dimension `width` and a
/// width × width N(0, 1) weight matrix (pre-activations ~√width wide: tanh
/// saturates), then tanh(BatchNorm(x·W)) (training-mode statistics of the
/// batch). Writes <out>/probe.json and probe_histograms.csv.
ProbeResult run_probe(const ProbeConfig& config);

}  // namespace bnlab::experiment
