#include "bnlab/data/dataset.h"

#include "bnlab/io/atomic_file.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

namespace bnlab::data {

Dataset synthetic_dataset(const SyntheticClassificationOptions& options) {
  SyntheticClassification task(options);
  Dataset d;
  d.name = "synthetic";
  d.train = task.train();
  d.val = task.val();
  d.num_classes = options.num_classes();
  d.num_features = options.num_features();
  return d;
}

Dataset names_dataset(const std::string& path, const NamesOptions& options) {
  TORCH_CHECK(options.context() >= 1, "bnlab::data::names_dataset: expected context >= 1, got ", options.context());
  TORCH_CHECK(options.val_fraction() >= 0 && options.val_fraction() < 1,
              "bnlab::data::names_dataset: expected val_fraction in [0, 1), got ", options.val_fraction());
  std::istringstream in(io::read_file(path));
  std::vector<std::string> words;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line.find('.') != std::string::npos) {
      throw std::runtime_error(path + ":" + std::to_string(number) + ": the word \"" + line +
                               "\" contains '.', the boundary token");
    }
    words.push_back(line);
  }
  if (words.empty()) throw std::runtime_error(path + ": no words (expected one word per line)");
  std::set<char> chars;
  for (const auto& w : words) chars.insert(w.begin(), w.end());
  Dataset d;
  d.name = "names";
  d.context = options.context();
  d.vocabulary.push_back(".");
  std::map<char, int64_t> index;
  for (char c : chars) {
    index[c] = static_cast<int64_t>(d.vocabulary.size());
    d.vocabulary.push_back(std::string(1, c));
  }
  d.vocab_size = static_cast<int64_t>(d.vocabulary.size());
  d.num_classes = d.vocab_size;
  // Split the words (not the examples), reproducibly.
  auto gen = at::detail::createCPUGenerator(options.seed());
  const auto order_tensor = torch::randperm(static_cast<int64_t>(words.size()), gen, torch::kLong);
  const auto order = order_tensor.accessor<int64_t, 1>();
  const auto n_val = static_cast<int64_t>(options.val_fraction() * static_cast<double>(words.size()));
  auto build = [&](int64_t begin, int64_t end) {
    std::vector<int64_t> xs;
    std::vector<int64_t> ys;
    for (int64_t i = begin; i < end; ++i) {
      const auto& w = words[static_cast<size_t>(order[i])];
      std::vector<int64_t> window(static_cast<size_t>(options.context()), 0);
      for (size_t k = 0; k <= w.size(); ++k) {
        const int64_t target = k < w.size() ? index[w[k]] : 0;
        xs.insert(xs.end(), window.begin(), window.end());
        ys.push_back(target);
        window.erase(window.begin());
        window.push_back(target);
      }
    }
    Split s;
    const auto n = static_cast<int64_t>(ys.size());
    s.inputs = torch::tensor(xs, torch::kLong).view({n, options.context()});
    s.targets = torch::tensor(ys, torch::kLong);
    return s;
  };
  d.val = build(0, n_val);
  d.train = build(n_val, static_cast<int64_t>(words.size()));
  if (n_val == 0) {
    d.val.inputs = torch::empty({0, options.context()}, torch::kLong);
    d.val.targets = torch::empty({0}, torch::kLong);
  }
  return d;
}

namespace {

std::string read_maybe_gzipped(const std::string& path) {
  if (path.size() < 3 || path.compare(path.size() - 3, 3, ".gz") != 0) return io::read_file(path);
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw std::runtime_error("cannot open " + path);
  std::string out;
  char buf[1 << 16];
  int n = 0;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  int err = 0;
  const char* message = gzerror(f, &err);
  const bool failed = n < 0 || (err != Z_OK && err != Z_STREAM_END);
  const std::string why = failed ? message : "";
  gzclose(f);
  if (failed) throw std::runtime_error(path + ": corrupt gzip data: " + why);
  return out;
}

// The file to read for an MNIST part: `name` or `name.gz`.
std::string find_part(const std::string& dir, const std::string& name) {
  const auto plain = (std::filesystem::path(dir) / name).string();
  if (std::filesystem::exists(plain)) return plain;
  if (std::filesystem::exists(plain + ".gz")) return plain + ".gz";
  throw std::runtime_error("mnist: " + dir + " has neither " + name + " nor " + name + ".gz");
}

}  // namespace

IdxArray read_idx(const std::string& path, int expected_dims) {
  const std::string bytes = read_maybe_gzipped(path);
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(bytes[i]); };
  if (bytes.size() < 4) throw std::runtime_error(path + ": truncated: no IDX header");
  const uint32_t magic = (uint32_t{u8(0)} << 24) | (uint32_t{u8(1)} << 16) | (uint32_t{u8(2)} << 8) | u8(3);
  const uint32_t expected = 0x0800U | static_cast<uint32_t>(expected_dims);
  if (magic != expected) {
    std::ostringstream msg;
    msg << path << ": wrong magic number 0x" << std::hex << magic << ", expected 0x" << expected
        << " (unsigned bytes, " << std::dec << expected_dims << " dimensions)";
    throw std::runtime_error(msg.str());
  }
  const size_t header = 4 + 4 * static_cast<size_t>(expected_dims);
  if (bytes.size() < header) throw std::runtime_error(path + ": truncated: the header needs " + std::to_string(header) + " bytes");
  IdxArray out;
  size_t total = 1;
  for (int d = 0; d < expected_dims; ++d) {
    const size_t at = 4 + 4 * static_cast<size_t>(d);
    const uint32_t dim = (uint32_t{u8(at)} << 24) | (uint32_t{u8(at + 1)} << 16) | (uint32_t{u8(at + 2)} << 8) | u8(at + 3);
    out.dims.push_back(dim);
    total *= dim;
  }
  if (bytes.size() - header < total) {
    throw std::runtime_error(path + ": truncated: expected " + std::to_string(total) + " bytes of data, got " +
                             std::to_string(bytes.size() - header));
  }
  out.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header),
                  bytes.begin() + static_cast<std::ptrdiff_t>(header + total));
  return out;
}

Dataset mnist_dataset(const std::string& dir, const MnistOptions& options) {
  auto load = [&](const std::string& images_name, const std::string& labels_name, int64_t limit) {
    const auto images_path = find_part(dir, images_name);
    const auto labels_path = find_part(dir, labels_name);
    const auto images = read_idx(images_path, 3);
    const auto labels = read_idx(labels_path, 1);
    if (images.dims[0] != labels.dims[0]) {
      throw std::runtime_error("mnist: " + images_path + " has " + std::to_string(images.dims[0]) + " images but " +
                               labels_path + " has " + std::to_string(labels.dims[0]) + " labels");
    }
    int64_t n = images.dims[0];
    if (limit > 0) n = std::min(n, limit);
    const int64_t pixels = images.dims[1] * images.dims[2];
    Split s;
    s.inputs = torch::from_blob(const_cast<uint8_t*>(images.data.data()), {n, pixels}, torch::kUInt8)
                   .to(torch::kFloat)
                   .div_(255.0)
                   .sub_(0.1307)
                   .div_(0.3081);
    s.targets = torch::from_blob(const_cast<uint8_t*>(labels.data.data()), {n}, torch::kUInt8).to(torch::kLong);
    const auto bad = s.targets.ge(10).any().item<bool>();
    if (bad) throw std::runtime_error("mnist: " + labels_path + ": labels must be digits 0-9");
    return s;
  };
  Dataset d;
  d.name = "mnist";
  d.train = load("train-images-idx3-ubyte", "train-labels-idx1-ubyte", options.train_limit());
  d.val = load("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", options.val_limit());
  d.num_classes = 10;
  d.num_features = d.train.inputs.size(1);
  return d;
}

}  // namespace bnlab::data
