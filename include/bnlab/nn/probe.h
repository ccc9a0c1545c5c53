// The hook through which bnlab layers report statistics in the same pass as
// their forward and backward work (used by bnlab::train::Recorder).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace bnlab::nn {

/// Slots of an activation layer's statistics row. The forward kernel fills the
/// forward slots and the backward kernel the gradient slots, in the same pass
/// over the data as their main work; each call overwrites its slots.
namespace activation_stat {
enum Slot : int64_t {
  kInputCount = 0,     ///< number of input elements
  kOutputCount,        ///< number of output elements (units × positions)
  kUnits,              ///< units: features of (N, C) or channels of (N, C, *) outputs
  kSaturated,          ///< output elements saturated by the module's rule
  kDeadUnits,          ///< units saturated at every element of the batch
  kDerivativeSum,      ///< Σ f′(x) over the input elements
  kInputSum,           ///< Σ x
  kInputSumSq,         ///< Σ x²
  kOutputSum,          ///< Σ y
  kOutputSumSq,        ///< Σ y²
  kSampleCount,        ///< values of x copied into the probe's `sample` (all, or a strided subset)
  kNonFiniteOutput,    ///< NaN/Inf elements in y
  kGradOutputSumSq,    ///< Σ (∂L/∂y)²
  kGradInputSumSq,     ///< Σ (∂L/∂x)²
  kNonFiniteGradInput, ///< NaN/Inf elements in ∂L/∂x
  kCount               ///< number of slots
};
}  // namespace activation_stat

/// Slots of a BatchNorm layer's statistics row (forward: batch statistics
/// against the running ones they are about to update; backward: gradients).
namespace batch_norm_stat {
enum Slot : int64_t {
  kChannels = 0,        ///< C
  kValuesPerChannel,    ///< M = N·∏spatial
  kBatchMeanAvg,        ///< mean over channels of the batch mean μ_B
  kBatchVarAvg,         ///< mean over channels of the batch variance σ²_B (biased)
  kRunningMeanAvg,      ///< mean over channels of running_mean (before the update)
  kRunningVarAvg,       ///< mean over channels of running_var (before the update)
  kMeanDrift,           ///< mean over channels of |μ_B − μ_run| / √(σ²_run + ε)
  kVarDrift,            ///< mean over channels of |ln(σ²_B / σ²_run)|
  kOutputSumSq,         ///< Σ y²
  kNonFiniteOutput,     ///< NaN/Inf elements in y
  kGradOutputSumSq,     ///< Σ (∂L/∂y)²
  kGradInputSumSq,      ///< Σ (∂L/∂x)²
  kNonFiniteGradInput,  ///< NaN/Inf elements in ∂L/∂x
  kCount
};
}  // namespace batch_norm_stat

/// What a recorder attaches to a layer. While attached, the layer's forward
/// and backward write its statistics row `stats` (float64, on the layer's
/// device, `kCount` slots of the layer's kind) in place, with no host sync.
/// An activation also copies its input, or a strided subset of it, into
/// `sample` (float32, on the layer's device) when that is defined, so the
/// percentiles can be computed off the training thread (input_percentiles()).
/// When `capture_tensors` is set, the forward also keeps references to its
/// input and output and the backward to the gradients, for histograms.
struct LayerProbe {
  torch::Tensor stats;
  torch::Tensor sample;
  /// BatchNorm only, optional (float64, 4·C, on the layer's device): when
  /// defined, the forward copies the per-channel batch mean, batch variance,
  /// running mean and running variance (before the update) here instead of
  /// averaging them into the row's drift slots, leaving that arithmetic to the
  /// consumer (the recorder does it off the training thread).
  torch::Tensor channel_stats;
  bool capture_tensors = false;
  /// Autograd sequence number of the forward's output node: orders layers by
  /// when their forward ran (-1 until a forward with grad ran).
  int64_t forward_sequence_nr = -1;
  torch::Tensor input;        ///< x of the last forward (when capturing)
  torch::Tensor output;       ///< y of the last forward (when capturing)
  torch::Tensor grad_output;  ///< ∂L/∂y of the last backward (when capturing)
  torch::Tensor grad_input;   ///< ∂L/∂x of the last backward (when capturing)
};

/// A capacity for an activation probe's sample, for code that attaches probes
/// itself: inputs up to the sample's size are copied whole (exact
/// percentiles), larger ones as a strided subset whose stride shares no factor
/// with the values per example, so that it reaches every unit and position.
/// The Recorder sizes its samples by RecorderOptions::percentile_sample.
constexpr int64_t kProbeSampleSize = 4096;

/// The q-quantiles (torch.quantile's linear interpolation) of the first
/// `count` values of `sample`, a host array; NaN when count is 0 or a value is NaN.
std::vector<double> sample_quantiles(const float* sample, int64_t count, const std::vector<double>& qs);

/// Implemented by every bnlab layer that can report statistics through a probe.
class Probeable {
 public:
  virtual ~Probeable() = default;
  /// Attaches `probe` (or detaches with nullptr).
  void set_probe(std::shared_ptr<LayerProbe> probe) { probe_ = std::move(probe); }
  const std::shared_ptr<LayerProbe>& probe() const { return probe_; }

 protected:
  /// Records x and y and hooks the gradients when the probe asks for tensors.
  void capture(const torch::Tensor& input, const torch::Tensor& output) const;

  std::shared_ptr<LayerProbe> probe_;
};

}  // namespace bnlab::nn
