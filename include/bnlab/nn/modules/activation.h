// bnlab's activation modules: each wraps a hand-written autograd Function and
// knows its saturation rule (see bnlab/autograd/activation.h for the table).
#pragma once

#include <bnlab/autograd/activation.h>
#include <bnlab/nn/options/activation.h>
#include <bnlab/nn/probe.h>

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <ostream>
#include <string>
#include <utility>

namespace bnlab::nn {

/// What every bnlab activation module offers, so tools (the recorder, the
/// study) can treat them alike.
class ActivationLayer : public Probeable {
 public:
  /// True where a unit is saturated by this module's rule; shaped like the output.
  virtual torch::Tensor saturated(const torch::Tensor& input) const = 0;
  /// f′(x), shaped like the input (for Maxout: 1 at each group's winner, 0 elsewhere).
  virtual torch::Tensor local_derivative(const torch::Tensor& input) const = 0;
  /// The largest value f′ takes; "gradient pass-through" is mean f′ over this.
  virtual double max_local_derivative() const = 0;
  /// The name make_activation() knows the module by ("tanh", "leaky_relu", ...).
  virtual std::string activation_name() const = 0;
  /// Whether the rule can flag anything (false for LeakyReLU and Maxout).
  virtual bool can_saturate() const = 0;
  /// The output's range when it is bounded (tanh: [−1, 1]), for fixed-range histograms.
  virtual c10::optional<std::pair<double, double>> output_bounds() const { return c10::nullopt; }
  /// The Function parameters of an elementwise activation; nullopt for Maxout.
  virtual c10::optional<autograd::ActivationParams> elementwise_params() const { return c10::nullopt; }
};

/// Shared implementation of the elementwise activations: the module is thin,
/// the maths lives in autograd::ElementwiseActivationFunction.
template <typename Derived, typename Options>
class ElementwiseActivationImpl : public torch::nn::Cloneable<Derived>, public ActivationLayer {
 public:
  explicit ElementwiseActivationImpl(const Options& options_) : options(options_) {}

  void reset() override {}

  /// y = f(input); also fills the attached probe's statistics, if any.
  torch::Tensor forward(const torch::Tensor& input);

  torch::Tensor saturated(const torch::Tensor& input) const override;
  torch::Tensor local_derivative(const torch::Tensor& input) const override;
  double max_local_derivative() const override;
  bool can_saturate() const override;
  c10::optional<std::pair<double, double>> output_bounds() const override;
  c10::optional<autograd::ActivationParams> elementwise_params() const override { return params(); }

  /// The Function's view of the options.
  virtual autograd::ActivationParams params() const = 0;

  Options options;
};

#define BNLAB_DECLARE_ELEMENTWISE_ACTIVATION(Name, name_string)                              \
  class Name##Impl : public ElementwiseActivationImpl<Name##Impl, Name##Options> {           \
   public:                                                                                   \
    explicit Name##Impl(const Name##Options& options_ = {});                                 \
    autograd::ActivationParams params() const override;                                      \
    std::string activation_name() const override { return name_string; }                    \
    void pretty_print(std::ostream& stream) const override;                                  \
  };                                                                                         \
  TORCH_MODULE(Name)

/// tanh(x). Saturating.
BNLAB_DECLARE_ELEMENTWISE_ACTIVATION(Tanh, "tanh");
/// 1/(1 + e^−x). Saturating.
BNLAB_DECLARE_ELEMENTWISE_ACTIVATION(Sigmoid, "sigmoid");
/// x/(1 + |x|). Saturating.
BNLAB_DECLARE_ELEMENTWISE_ACTIVATION(Softsign, "softsign");
/// clamp(x, min_val, max_val). Saturating (zero gradient outside).
BNLAB_DECLARE_ELEMENTWISE_ACTIVATION(Hardtanh, "hardtanh");
/// max(x, 0). Saturating (zero gradient for x ≤ 0).
BNLAB_DECLARE_ELEMENTWISE_ACTIVATION(ReLU, "relu");
/// x or negative_slope·x. Non-saturating.
BNLAB_DECLARE_ELEMENTWISE_ACTIVATION(LeakyReLU, "leaky_relu");
/// x or α(e^x − 1). Non-saturating in the sense of the study; flat near −α.
BNLAB_DECLARE_ELEMENTWISE_ACTIVATION(ELU, "elu");
/// x·Φ(x) (or its tanh approximation). Non-saturating.
BNLAB_DECLARE_ELEMENTWISE_ACTIVATION(GELU, "gelu");
/// x·sigmoid(x). Non-saturating.
BNLAB_DECLARE_ELEMENTWISE_ACTIVATION(SiLU, "silu");

#undef BNLAB_DECLARE_ELEMENTWISE_ACTIVATION

/// Maxout: (N, C·k, *) → (N, C, *), the max over each group of k consecutive
/// channels. Non-saturating: the winner passes the whole gradient.
class MaxoutImpl : public torch::nn::Cloneable<MaxoutImpl>, public ActivationLayer {
 public:
  explicit MaxoutImpl(const MaxoutOptions& options_);
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& input);
  torch::Tensor saturated(const torch::Tensor& input) const override;
  torch::Tensor local_derivative(const torch::Tensor& input) const override;
  double max_local_derivative() const override { return 1.0; }
  std::string activation_name() const override { return "maxout"; }
  bool can_saturate() const override { return false; }
  void pretty_print(std::ostream& stream) const override;

  MaxoutOptions options;
};
TORCH_MODULE(Maxout);

}  // namespace bnlab::nn
