#include "bnlab/train/metrics.h"

namespace bnlab::train {

const char* to_string(LayerKind kind) {
  switch (kind) {
    case LayerKind::kActivation: return "activation";
    case LayerKind::kBatchNorm: return "batchnorm";
    default: return "parameters";
  }
}

#define BNLAB_LAYER_COLUMN(field, text) \
  MetricColumn { #field, text, [](const LayerMetrics& m) { return m.field; } }
#define BNLAB_PARAM_COLUMN(param, field, text) \
  MetricColumn { #param "_" #field, text, [](const LayerMetrics& m) { return m.param.field; } }

const std::vector<MetricColumn>& layer_metric_columns() {
  static const std::vector<MetricColumn> columns{
      BNLAB_LAYER_COLUMN(saturation_pct, "% of output elements saturated by the activation's rule"),
      BNLAB_LAYER_COLUMN(dead_pct, "% of units (features/channels) saturated on every element of the batch"),
      BNLAB_LAYER_COLUMN(input_mean, "mean of the activation's input"),
      BNLAB_LAYER_COLUMN(input_std, "standard deviation of the input (n - 1)"),
      BNLAB_LAYER_COLUMN(output_mean, "mean of the activation's output"),
      BNLAB_LAYER_COLUMN(output_std, "standard deviation of the output (n - 1)"),
      BNLAB_LAYER_COLUMN(input_p15, "15th percentile of the input"),
      BNLAB_LAYER_COLUMN(input_p50, "median of the input"),
      BNLAB_LAYER_COLUMN(input_p85, "85th percentile of the input"),
      BNLAB_LAYER_COLUMN(grad_pass_through, "mean local derivative f'(x) over its maximum"),
      BNLAB_LAYER_COLUMN(grad_output_norm, "L2 norm of dL/d(output)"),
      BNLAB_LAYER_COLUMN(grad_input_norm, "L2 norm of dL/d(input)"),
      BNLAB_LAYER_COLUMN(bn_batch_mean, "batch mean, averaged over channels"),
      BNLAB_LAYER_COLUMN(bn_batch_var, "batch variance (biased), averaged over channels"),
      BNLAB_LAYER_COLUMN(bn_running_mean, "running mean before the update, averaged over channels"),
      BNLAB_LAYER_COLUMN(bn_running_var, "running variance before the update, averaged over channels"),
      BNLAB_LAYER_COLUMN(bn_mean_drift, "mean over channels of |batch mean - running mean| / sqrt(running var + eps)"),
      BNLAB_LAYER_COLUMN(bn_var_drift, "mean over channels of |ln(batch var / running var)|"),
      BNLAB_PARAM_COLUMN(weight, norm, "L2 norm of the weight"),
      BNLAB_PARAM_COLUMN(weight, grad_norm, "L2 norm of the weight's gradient"),
      BNLAB_PARAM_COLUMN(weight, grad_to_data, "std(weight grad) / std(weight)"),
      BNLAB_PARAM_COLUMN(weight, update_to_data, "std(weight change this step) / std(weight)"),
      BNLAB_PARAM_COLUMN(bias, norm, "L2 norm of the bias"),
      BNLAB_PARAM_COLUMN(bias, grad_norm, "L2 norm of the bias's gradient"),
      BNLAB_PARAM_COLUMN(bias, grad_to_data, "std(bias grad) / std(bias)"),
      BNLAB_PARAM_COLUMN(bias, update_to_data, "std(bias change this step) / std(bias)"),
      BNLAB_LAYER_COLUMN(nonfinite_forward, "NaN/Inf elements in the layer's output or parameters"),
      BNLAB_LAYER_COLUMN(nonfinite_grad, "NaN/Inf elements in dL/d(input) or the parameters' gradients"),
  };
  return columns;
}

#undef BNLAB_LAYER_COLUMN
#undef BNLAB_PARAM_COLUMN

#define BNLAB_STEP_COLUMN(field, text) \
  StepColumn { #field, text, [](const StepMetrics& m) { return m.field; } }

const std::vector<StepColumn>& step_metric_columns() {
  static const std::vector<StepColumn> columns{
      BNLAB_STEP_COLUMN(loss, "training loss of the step's batch"),
      BNLAB_STEP_COLUMN(lr, "learning rate used by the step"),
      BNLAB_STEP_COLUMN(grad_norm, "L2 norm of the gradient over all parameters"),
      BNLAB_STEP_COLUMN(step_time_s, "wall time of the step in seconds"),
      BNLAB_STEP_COLUMN(examples_per_s, "examples per second"),
      BNLAB_STEP_COLUMN(val_loss, "validation loss (evaluation steps only)"),
      BNLAB_STEP_COLUMN(val_accuracy, "validation accuracy (evaluation steps only)"),
  };
  return columns;
}

#undef BNLAB_STEP_COLUMN

}  // namespace bnlab::train
