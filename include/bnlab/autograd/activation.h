// Hand-written autograd Functions of bnlab's activations.
#pragma once

#include <bnlab/nn/probe.h>

#include <torch/autograd.h>
#include <torch/types.h>

#include <c10/util/Optional.h>

namespace bnlab::autograd {

/// The elementwise activations, f(x), their derivatives and saturation rules
/// (t = saturation threshold, y = f(x)):
///
/// | kind       | f(x)                                   | f′(x)                               | saturated where        |
/// |------------|----------------------------------------|-------------------------------------|------------------------|
/// | kTanh      | tanh x                                 | 1 − y²                              | |y| > t                |
/// | kSigmoid   | 1/(1 + e^−x)                           | y·(1 − y)                           | |2y − 1| > t           |
/// | kSoftsign  | x/(1 + |x|)                            | 1/(1 + |x|)²                        | |y| > t                |
/// | kHardtanh  | clamp(x, min_val, max_val)             | 1 if min_val < x < max_val, else 0  | x < min_val or x > max_val |
/// | kReLU      | max(x, 0)                              | 1 if x > 0, else 0                  | x ≤ 0                  |
/// | kLeakyReLU | x if x > 0, else negative_slope·x      | 1 if x > 0, else negative_slope     | never                  |
/// | kELU       | x if x > 0, else α·(e^x − 1)           | 1 if x > 0, else y + α (= α·e^x)    | y < −α·t               |
/// | kGELU      | x·Φ(x), Φ(x) = ½(1 + erf(x/√2))        | Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π) | x < 0 and |f′| < 1 − t² |
/// | kGELUTanh  | ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³) | ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 0.134145x²) | as kGELU |
/// | kSiLU      | x·s, s = 1/(1 + e^−x)                  | s·(1 + x·(1 − s))                   | x < 0 and |f′| < 1 − t² |
///
/// The derivative conventions at kinks are PyTorch's (ReLU passes no gradient
/// at 0, Hardtanh none at its bounds, ELU passes α at 0). 1 − t² is tanh's
/// derivative at |y| = t, so the GELU/SiLU rule flags the same flatness.
enum class ActivationKind : int {
  kTanh,
  kSigmoid,
  kSoftsign,
  kHardtanh,
  kReLU,
  kLeakyReLU,
  kELU,
  kGELU,
  kGELUTanh,
  kSiLU,
};

/// The threshold Karpathy's makemore lectures use for tanh saturation (|y| > 0.97).
constexpr double kDefaultSaturationThreshold = 0.97;

/// An elementwise activation with its parameters.
struct ActivationParams {
  ActivationKind kind = ActivationKind::kTanh;
  double min_val = -1.0;          ///< Hardtanh
  double max_val = 1.0;           ///< Hardtanh
  double negative_slope = 0.01;   ///< LeakyReLU
  double alpha = 1.0;             ///< ELU
  double saturation_threshold = kDefaultSaturationThreshold;
};

/// Whether f′ is computed from the output y (Tanh, Sigmoid, ReLU, ELU) rather
/// than the input x; such activations also run in place.
bool derivative_from_output(ActivationKind kind);

/// The largest value f′ takes (1 for most; ¼ for Sigmoid; max(1, α) for ELU;
/// ≈1.129 for GELU and ≈1.100 for SiLU, found numerically).
double max_local_derivative(const ActivationParams& params);

/// y = f(x) with a hand-written forward and backward (gx = gy ⊙ f′).
///
/// `probe`, when given (a recorder's), receives statistics: the forward fills
/// its float64 `stats` row (nn::activation_stat slots: saturation counts, Σ f′,
/// sums of x and y, ...) in the same pass and copies x into its `sample`; the
/// backward completes the row (Σ gy², Σ gx²). `inplace` writes y into x (only
/// for kinds whose derivative can be read from y).
///
/// Double backward: with create_graph, the backward builds gx from
/// differentiable tensor ops of the saved x or y (y's graph runs back through
/// this Function), so second derivatives are exact.
struct ElementwiseActivationFunction
    : public torch::autograd::Function<ElementwiseActivationFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const ActivationParams& params, const nn::LayerProbe* probe,
                               bool inplace);
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs);
};

/// Maxout over groups of `pieces` consecutive channels (dim 1):
/// (N, C·k, *) → (N, C, *), y[n, c, …] = max_j x[n, c·k + j, …].
/// The gradient flows to the winning piece (the first on ties, as torch.max).
/// Maxout never saturates: the winner always passes the whole gradient.
struct MaxoutFunction : public torch::autograd::Function<MaxoutFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               int64_t pieces, const nn::LayerProbe* probe);
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs);
};

}  // namespace bnlab::autograd
