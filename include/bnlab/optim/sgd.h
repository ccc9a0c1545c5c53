// bnlab::optim::SGD: torch::optim::SGD with a fused, one-pass step.
#pragma once

#include <torch/optim/sgd.h>

#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace bnlab::optim {

/// A drop-in torch::optim::SGD (the same SGDOptions, parameter groups, state
/// and serialization: its state dict loads into torch::optim::SGD and back)
/// whose step updates each contiguous CPU float/double parameter in one pass
/// over θ, its gradient and its momentum buffer, with the arithmetic and
/// rounding of torch::optim::SGD's ops:
///
///     d = g + λθ;  buf = μ·buf + (1 − τ)·d  (buf = d on the first step);
///     d = d + μ·buf (Nesterov) or buf;  θ = θ − η·d
///
/// torch::optim::SGD spends several tensor ops, temporary tensors and a
/// string-keyed state lookup per parameter on every step; for a small MLP that
/// is most of the step's non-GEMM time. Parameters elsewhere (another device,
/// dtype or layout, sparse gradients) take torch::optim::SGD's own path, so
/// results are the same either way.
class SGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;

  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  using StateKey =
      std::remove_reference_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;
  /// state_'s key of a parameter (computed once per parameter: in LibTorch 1.x
  /// it is the TensorImpl address printed as a string).
  const StateKey& state_key(const torch::Tensor& param);
  std::unordered_map<const void*, StateKey> keys_;
};

}  // namespace bnlab::optim
