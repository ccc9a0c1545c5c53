#include "bnlab/optim/state_key_cache.h"

#include <sstream>
#include <string>

namespace bnlab::optim::detail {

namespace {

template <typename Key>
Key make_state_key(const void* impl) {
  if constexpr (std::is_same_v<Key, std::string>) {
    // As torch::optim formats it (an ostream's pointer output).
    std::ostringstream out;
    out << impl;
    return out.str();
  } else {
    return reinterpret_cast<Key>(const_cast<void*>(impl));
  }
}

}  // namespace

const StateKeyCache::Key& StateKeyCache::operator()(const torch::Tensor& param) {
  const void* impl = param.unsafeGetTensorImpl();
  auto it = keys_.find(impl);
  if (it == keys_.end()) it = keys_.emplace(impl, make_state_key<Key>(impl)).first;
  return it->second;
}

}  // namespace bnlab::optim::detail
