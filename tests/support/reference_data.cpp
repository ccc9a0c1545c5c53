#include "reference_data.h"

#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace bnlab_test {

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("reference data: cannot open " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

ReferenceData ReferenceData::load(const std::string& dir, const std::string& name) {
  ReferenceData data;
  data.source_ = dir + "/" + name;
  try {
    data.meta_ = nlohmann::json::parse(read_file(data.source_ + ".json"));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("reference data: malformed " + data.source_ + ".json: " + e.what());
  }
  data.blob_ = read_file(data.source_ + ".bin");
  return data;
}

torch::ScalarType dtype_from_name(const std::string& name) {
  if (name == "float32") return torch::kFloat;
  if (name == "float64") return torch::kDouble;
  if (name == "int64") return torch::kLong;
  if (name == "bool") return torch::kBool;
  if (name == "bfloat16") return torch::kBFloat16;
  throw std::runtime_error("reference data: unknown dtype '" + name + "'");
}

torch::Tensor ReferenceData::tensor(const nlohmann::json& descriptor) const {
  const auto dtype = dtype_from_name(descriptor.at("dtype").get<std::string>());
  const auto shape = descriptor.at("shape").get<std::vector<int64_t>>();
  const auto offset = descriptor.at("offset").get<size_t>();
  auto result = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  const size_t bytes = static_cast<size_t>(result.numel()) * result.element_size();
  if (offset + bytes > blob_.size()) {
    throw std::runtime_error("reference data: " + source_ + ".bin is truncated (tensor at offset " +
                             std::to_string(offset) + " needs " + std::to_string(bytes) +
                             " bytes, file has " + std::to_string(blob_.size()) + ")");
  }
  std::memcpy(result.data_ptr(), blob_.data() + offset, bytes);
  return result;
}

std::string reference_dir() {
  const char* dir = std::getenv("BNLAB_REFERENCE_DIR");
  if (dir == nullptr || *dir == '\0') {
    throw std::runtime_error(
        "BNLAB_REFERENCE_DIR is not set: run the tests through ctest, whose fixture produces "
        "the PyTorch reference data");
  }
  return dir;
}

torch::Tensor with_layout(const torch::Tensor& t, const std::string& layout) {
  if (layout == "contiguous") return t.contiguous();
  if (layout == "channels_last") {
    return t.contiguous(t.dim() == 4 ? torch::MemoryFormat::ChannelsLast
                                     : torch::MemoryFormat::ChannelsLast3d);
  }
  if (layout == "noncontiguous") {
    auto shape = t.sizes().vec();
    shape.back() *= 2;
    auto big = torch::zeros(shape, t.options());
    auto view = big.slice(/*dim=*/-1, /*start=*/0, /*end=*/c10::nullopt, /*step=*/2);
    view.copy_(t);
    return view;
  }
  if (layout == "transposed") {
    std::vector<int64_t> order(static_cast<size_t>(t.dim()));
    for (int64_t d = 0; d < t.dim(); ++d) order[static_cast<size_t>(d)] = t.dim() - 1 - d;
    return t.permute(order).contiguous().permute(order);
  }
  throw std::runtime_error("unknown layout '" + layout + "'");
}

}  // namespace bnlab_test
