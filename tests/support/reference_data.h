// Reads the PyTorch reference data written by tests/reference/refio.py.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <string>

namespace bnlab_test {

/// One reference data set: `<dir>/<name>.json` (metadata) and `<dir>/<name>.bin`
/// (raw tensor values at the byte offsets the metadata gives).
class ReferenceData {
 public:
  /// Loads `<dir>/<name>.{json,bin}`; throws std::runtime_error naming the file
  /// when one is missing or malformed.
  static ReferenceData load(const std::string& dir, const std::string& name);

  const nlohmann::json& meta() const { return meta_; }

  /// The tensor a {"dtype", "shape", "offset"} descriptor names, as a new
  /// contiguous CPU tensor.
  torch::Tensor tensor(const nlohmann::json& descriptor) const;

 private:
  nlohmann::json meta_;
  std::string blob_;
  std::string source_;
};

/// The directory the reference fixture wrote to: $BNLAB_REFERENCE_DIR.
/// Throws when it is unset (run the tests through ctest).
std::string reference_dir();

/// "float32" → torch::kFloat, ...; throws on an unknown name.
torch::ScalarType dtype_from_name(const std::string& name);

/// The same values as `t` in the memory layout `layout` ("contiguous",
/// "channels_last", "noncontiguous", "transposed"), built exactly as
/// refio.py's with_layout builds it.
torch::Tensor with_layout(const torch::Tensor& t, const std::string& layout);

}  // namespace bnlab_test
