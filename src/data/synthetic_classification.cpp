#include "bnlab/data/synthetic_classification.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace bnlab::data {

SyntheticClassification::SyntheticClassification(const SyntheticClassificationOptions& options)
    : options_(options) {
  TORCH_CHECK(options.num_features() > 0 && options.num_classes() > 1 &&
                  options.teacher_width() > 0,
              "bnlab::data::SyntheticClassification: expected num_features > 0, num_classes > 1 "
              "and teacher_width > 0, got ",
              options.num_features(), ", ", options.num_classes(), ", ", options.teacher_width());
  TORCH_CHECK(options.train_size() > 0 && options.val_size() >= 0,
              "bnlab::data::SyntheticClassification: expected train_size > 0 and val_size >= 0, got ",
              options.train_size(), " and ", options.val_size());
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(options.seed());
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  // Teacher weights scaled so that tanh sees unit-variance pre-activations.
  auto w1 = torch::randn({options.teacher_width(), options.num_features()}, gen, f32) /
            std::sqrt(static_cast<double>(options.num_features()));
  auto w2 = torch::randn({options.num_classes(), options.teacher_width()}, gen, f32) /
            std::sqrt(static_cast<double>(options.teacher_width()));
  auto make_split = [&](int64_t n) {
    Split s;
    s.inputs = torch::randn({n, options.num_features()}, gen, f32);
    s.targets = torch::tanh(s.inputs.matmul(w1.t())).matmul(w2.t()).argmax(1);
    return s;
  };
  train_ = make_split(options.train_size());
  val_ = make_split(options.val_size());
}

}  // namespace bnlab::data
