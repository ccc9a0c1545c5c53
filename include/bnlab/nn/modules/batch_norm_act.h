// bnlab::nn::BatchNormAct: BatchNorm followed by an activation, fused.
#pragma once

#include <bnlab/nn/modules/activation.h>
#include <bnlab/nn/options/batch_norm_act.h>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <ostream>
#include <string>

namespace bnlab::nn {

/// y = f(BatchNorm(x)) over (N, C, *) inputs, the same as
/// `BatchNorm{1,2,3}d` followed by the activation `options.activation()`, but
/// in one pass: the normalized values are computed in registers and never
/// stored, forward or backward (bnlab::autograd::BatchNormActFunction).
///
/// Parameters and buffers have BatchNorm's names and initialization (`weight`,
/// `bias`, `running_mean`, `running_var`, `num_batches_tracked`), so a state
/// dict loads into a BatchNorm module and back.
///
/// For the recorder it is an activation layer whose input is the normalized
/// z: saturation, dead units, percentiles and histograms describe z and f(z).
/// (BatchNorm's drift statistics are not recorded for it.)
class BatchNormActImpl : public torch::nn::Cloneable<BatchNormActImpl>, public ActivationLayer {
 public:
  explicit BatchNormActImpl(const BatchNormActOptions& options_);

  /// (Re)registers the parameters and buffers, initializes them and builds the activation.
  void reset() override;
  /// running_mean ← 0, running_var ← 1, num_batches_tracked ← 0.
  void reset_running_stats();
  /// Resets the running statistics, weight ← 1 and bias ← 0.
  void reset_parameters();

  /// Prints e.g. `bnlab::nn::BatchNormAct(64, activation=tanh, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)`.
  void pretty_print(std::ostream& stream) const override;

  /// f(BatchNorm(input)) for input (N, C, *): batch statistics in training
  /// (updating the running ones), running statistics in eval.
  torch::Tensor forward(const torch::Tensor& input);

  /// The saturation rule applied to f(z), z = BatchNorm(input) with the
  /// statistics this mode would use (running statistics are not updated).
  torch::Tensor saturated(const torch::Tensor& input) const override;
  /// f′(z) for z = BatchNorm(input), shaped like the input.
  torch::Tensor local_derivative(const torch::Tensor& input) const override;
  double max_local_derivative() const override;
  std::string activation_name() const override;
  bool can_saturate() const override;
  c10::optional<std::pair<double, double>> output_bounds() const override;
  c10::optional<autograd::ActivationParams> elementwise_params() const override;

  /// Keeps `num_batches_tracked` an int64 counter across dtype changes.
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  BatchNormActOptions options;
  torch::Tensor weight;
  torch::Tensor bias;
  torch::Tensor running_mean;
  torch::Tensor running_var;
  torch::Tensor num_batches_tracked;

 private:
  /// z = BatchNorm(input) without gradient and without updating running statistics.
  torch::Tensor normalized(const torch::Tensor& input) const;

  /// The activation (stateless, so not registered: the module's names stay BatchNorm's).
  torch::nn::AnyModule activation_;
  ActivationLayer* activation_layer_ = nullptr;
};
TORCH_MODULE(BatchNormAct);

}  // namespace bnlab::nn
