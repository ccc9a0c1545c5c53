// The key under which torch::optim keeps a parameter's state, computed once per parameter.
#pragma once

#include <torch/optim/optimizer.h>

#include <type_traits>
#include <unordered_map>
#include <utility>

namespace bnlab::optim::detail {

/// torch::optim::Optimizer::state()'s key of a parameter: the TensorImpl
/// address printed as a string in LibTorch 1.x, the address itself where the
/// map is keyed by pointer (2.x). Formatting the string costs about a
/// microsecond, so each parameter's key is kept.
class StateKeyCache {
 public:
  using Key = std::remove_reference_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;

  const Key& operator()(const torch::Tensor& param);

 private:
  std::unordered_map<const void*, Key> keys_;
};

}  // namespace bnlab::optim::detail
