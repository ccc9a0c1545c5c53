// What the recorder measures: one StepMetrics per training step, holding one
// LayerMetrics per layer. Every sink (CSV, JSON Lines, TensorBoard) writes
// these, with the column names of layer_metric_columns().
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace bnlab::train {

/// "Not measured" (a metric that does not apply to the layer, or a step that did not evaluate).
constexpr double kNotMeasured = std::numeric_limits<double>::quiet_NaN();

/// How the recorder treats a module.
enum class LayerKind {
  kActivation,  ///< a bnlab activation (saturation, pass-through, gradient norms)
  kBatchNorm,   ///< a bnlab BatchNorm (drift, parameters, gradient norms)
  kParameters,  ///< any other module with parameters (Linear, Conv2d, Embedding, ...)
};

/// "activation", "batchnorm" or "parameters".
const char* to_string(LayerKind kind);

/// One parameter tensor in one step.
struct ParamMetrics {
  double norm = kNotMeasured;            ///< ‖θ‖₂
  double grad_norm = kNotMeasured;       ///< ‖∂L/∂θ‖₂
  double grad_to_data = kNotMeasured;    ///< std(∂L/∂θ) / std(θ)
  double update_to_data = kNotMeasured;  ///< std(Δθ) / std(θ), Δθ the optimizer's actual change this step
};

/// One layer in one step. Fields that do not apply to the layer's kind are NaN.
struct LayerMetrics {
  std::string name;       ///< module path, e.g. "net.3"
  std::string type;       ///< module type, e.g. "Tanh", "BatchNorm1d", "Linear"
  LayerKind kind = LayerKind::kParameters;
  int64_t forward_order = -1;  ///< position in the forward pass (0 = first)

  // activations
  double saturation_pct = kNotMeasured;     ///< % of output elements saturated (module's rule)
  double dead_pct = kNotMeasured;           ///< % of units saturated on every element of the batch
  double input_mean = kNotMeasured;
  double input_std = kNotMeasured;
  double output_mean = kNotMeasured;
  double output_std = kNotMeasured;
  double input_p15 = kNotMeasured;          ///< 15th percentile of the input
  double input_p50 = kNotMeasured;
  double input_p85 = kNotMeasured;
  double grad_pass_through = kNotMeasured;  ///< mean f′(x) / max f′

  // activations and BatchNorm
  double grad_output_norm = kNotMeasured;  ///< ‖∂L/∂y‖₂
  double grad_input_norm = kNotMeasured;   ///< ‖∂L/∂x‖₂

  // BatchNorm (averages over channels; running statistics before this step's update)
  double bn_batch_mean = kNotMeasured;
  double bn_batch_var = kNotMeasured;
  double bn_running_mean = kNotMeasured;
  double bn_running_var = kNotMeasured;
  double bn_mean_drift = kNotMeasured;  ///< mean |μ_B − μ_run| / √(σ²_run + ε)
  double bn_var_drift = kNotMeasured;   ///< mean |ln(σ²_B / σ²_run)|

  // layers with parameters (BatchNorm included)
  ParamMetrics weight;
  ParamMetrics bias;

  /// NaN/Inf elements this step in the forward pass: the layer's output or parameters.
  double nonfinite_forward = 0.0;
  /// NaN/Inf elements this step in the backward pass: ∂L/∂x or the parameters' gradients.
  double nonfinite_grad = 0.0;
};

/// A histogram with fixed bins: counts[i] counts values in [edges[i], edges[i+1])
/// (the last bin includes its right edge; values outside [edges.front(),
/// edges.back()] go to the first or last bin).
struct Histogram {
  std::string layer;     ///< layer name
  std::string quantity;  ///< "input", "output", "grad_output" or "grad_input"
  std::vector<double> edges;
  std::vector<double> counts;
  double min = kNotMeasured;
  double max = kNotMeasured;
  double num = 0.0;
  double sum = 0.0;
  double sum_squares = 0.0;
};

/// One training step.
struct StepMetrics {
  int64_t step = 0;
  double loss = kNotMeasured;
  double lr = kNotMeasured;
  double grad_norm = kNotMeasured;       ///< ‖∂L/∂θ‖₂ over all parameters
  double step_time_s = kNotMeasured;     ///< wall time from begin_step to end_step
  double examples_per_s = kNotMeasured;
  double val_loss = kNotMeasured;        ///< set on evaluation steps
  double val_accuracy = kNotMeasured;    ///< set on evaluation steps
  std::vector<LayerMetrics> layers;      ///< in forward order
  std::vector<Histogram> histograms;     ///< on histogram steps
};

/// A column of the per-layer table.
struct MetricColumn {
  const char* name;
  const char* description;
  double (*get)(const LayerMetrics&);
};

/// The per-layer metric columns, in the order every sink writes them.
const std::vector<MetricColumn>& layer_metric_columns();

/// A column of the per-step values, repeated on every layer row of the CSV.
struct StepColumn {
  const char* name;
  const char* description;
  double (*get)(const StepMetrics&);
};

/// loss, lr, grad_norm, step_time_s, examples_per_s, val_loss, val_accuracy.
const std::vector<StepColumn>& step_metric_columns();

}  // namespace bnlab::train
