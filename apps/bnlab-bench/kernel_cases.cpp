// BatchNorm kernels side by side with LibTorch's native ones.
#include "bnlab-bench/cases.h"

#include <bnlab/autograd/activation.h>
#include <bnlab/nn/functional/batch_norm.h>
#include <bnlab/nn/functional/batch_norm_act.h>

#include <fmt/format.h>
#include <torch/torch.h>

namespace bnlab::bench {

namespace {

// The input, upstream gradient and per-channel tensors of one shape, twice
// (one set per side, so neither side's running statistics touch the other's).
struct Operands {
  torch::Tensor x, g;
  torch::Tensor weight, bias, running_mean, running_var;

  Operands(const std::vector<int64_t>& shape, bool channels_last) {
    x = torch::randn(shape);
    if (channels_last) x = x.contiguous(shape.size() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d);
    x.requires_grad_(true);
    g = torch::randn_like(x);
    const int64_t c = shape[1];
    weight = torch::rand({c}).add_(0.5).requires_grad_(true);
    bias = torch::randn({c}).requires_grad_(true);
    running_mean = torch::zeros({c});
    running_var = torch::ones({c});
  }
  void clear_grads() {
    x.mutable_grad() = torch::Tensor();
    weight.mutable_grad() = torch::Tensor();
    bias.mutable_grad() = torch::Tensor();
  }
};

std::string shape_name(const std::vector<int64_t>& shape, bool channels_last) {
  return fmt::format("({}){}", fmt::join(shape, ", "), channels_last ? " channels_last" : shape.size() > 2 ? " NCHW" : "");
}

Comparison train_batch_norm(const std::vector<int64_t>& shape, bool channels_last, const BenchConfig& config) {
  torch::manual_seed(0);
  Operands a(shape, channels_last), b(shape, channels_last);
  auto ours = timed([&] {
    a.clear_grads();
    bnlab::functional::batch_norm(a.x, a.running_mean, a.running_var, a.weight, a.bias, true, 0.1, 1e-5).backward(a.g);
  });
  auto theirs = timed([&] {
    b.clear_grads();
    torch::batch_norm(b.x, b.weight, b.bias, b.running_mean, b.running_var, true, 0.1, 1e-5, false).backward(b.g);
  });
  return compare("BatchNorm fwd+bwd " + shape_name(shape, channels_last), {"bnlab::functional::batch_norm", ours},
                 {"torch::batch_norm", theirs}, 1.0, config.interleave);
}

Comparison eval_batch_norm(const std::vector<int64_t>& shape, const BenchConfig& config) {
  torch::manual_seed(0);
  Operands a(shape, false);
  torch::NoGradGuard no_grad;
  auto ours = timed([&] { bnlab::functional::batch_norm(a.x, a.running_mean, a.running_var, a.weight, a.bias, false, 0.1, 1e-5); });
  auto theirs = timed([&] { torch::batch_norm(a.x, a.weight, a.bias, a.running_mean, a.running_var, false, 0.1, 1e-5, false); });
  return compare("BatchNorm eval fwd " + shape_name(shape, false), {"bnlab::functional::batch_norm", ours},
                 {"torch::batch_norm", theirs}, 1.0, config.interleave);
}

Comparison batch_norm_tanh(const std::vector<int64_t>& shape, const BenchConfig& config) {
  torch::manual_seed(0);
  Operands a(shape, false), b(shape, false);
  autograd::ActivationParams tanh;
  tanh.kind = autograd::ActivationKind::kTanh;
  auto ours = timed([&] {
    a.clear_grads();
    bnlab::functional::batch_norm_act(a.x, a.running_mean, a.running_var, a.weight, a.bias, true, 0.1, 1e-5, tanh)
        .backward(a.g);
  });
  auto theirs = timed([&] {
    b.clear_grads();
    torch::tanh(torch::batch_norm(b.x, b.weight, b.bias, b.running_mean, b.running_var, true, 0.1, 1e-5, false))
        .backward(b.g);
  });
  return compare("BatchNormAct(tanh) fwd+bwd " + shape_name(shape, false), {"bnlab::nn::BatchNormAct (fused)", ours},
                 {"torch::batch_norm + torch::tanh", theirs}, 0.7, config.interleave);
}

// Achieved bandwidth: the bytes BatchNorm's fwd+bwd must move at the least
// (read x, write y; read g and x, write dx: 5 tensors) over its time, against
// a copy of as many bytes.
Comparison bandwidth(const std::vector<int64_t>& shape, bool channels_last, const BenchConfig& config) {
  torch::manual_seed(0);
  Operands a(shape, channels_last);
  const int64_t n = a.x.numel();
  auto src = torch::randn({5 * n / 2});
  auto dst = torch::empty_like(src);
  auto ours = timed([&] {
    a.clear_grads();
    bnlab::functional::batch_norm(a.x, a.running_mean, a.running_var, a.weight, a.bias, true, 0.1, 1e-5).backward(a.g);
  });
  auto theirs = timed([&] { dst.copy_(src); });
  auto c = compare("bandwidth of BatchNorm fwd+bwd " + shape_name(shape, channels_last),
                   {"bnlab BatchNorm fwd+bwd", ours}, {"copy of the same bytes", theirs}, /*goal=*/0.0,
                   config.interleave);
  const double bytes = 5.0 * static_cast<double>(n) * sizeof(float);
  c.extra = fmt::format("{:.1f} GB/s vs copy {:.1f} GB/s ({:.0f}% of copy)", bytes / c.ours_s / 1e9,
                        bytes / c.theirs_s / 1e9, 100.0 / c.ratio);
  return c;
}

}  // namespace

std::vector<Case> kernel_cases(const BenchConfig& config) {
  // --quick: a tenth of the large shapes (the code paths are the same).
  const std::vector<int64_t> big2d = config.quick ? std::vector<int64_t>{128, 256} : std::vector<int64_t>{512, 1024};
  const std::vector<int64_t> small2d{32, 100};
  const std::vector<int64_t> conv = config.quick ? std::vector<int64_t>{8, 16, 28, 28} : std::vector<int64_t>{32, 64, 56, 56};
  // Benchmark names (for --benchmark_filter): dims joined by 'x'.
  auto id = [](const std::vector<int64_t>& shape, bool channels_last) {
    return fmt::format("{}{}", fmt::join(shape, "x"), channels_last ? "/channels_last" : shape.size() > 2 ? "/NCHW" : "");
  };
  std::vector<Case> cases;
  auto add = [&](std::string name, std::function<Comparison()> f) { cases.push_back({std::move(name), std::move(f)}); };
  add("BatchNorm/train/" + id(big2d, false), [=] { return train_batch_norm(big2d, false, config); });
  add("BatchNorm/train/" + id(small2d, false), [=] { return train_batch_norm(small2d, false, config); });
  add("BatchNorm/train/" + id(conv, false), [=] { return train_batch_norm(conv, false, config); });
  add("BatchNorm/train/" + id(conv, true), [=] { return train_batch_norm(conv, true, config); });
  add("BatchNorm/eval/" + id(conv, false), [=] { return eval_batch_norm(conv, config); });
  add("BatchNormAct_tanh/" + id(conv, false), [=] { return batch_norm_tanh(conv, config); });
  add("BatchNormAct_tanh/" + id(big2d, false), [=] { return batch_norm_tanh(big2d, config); });
  add("Bandwidth/" + id(conv, false), [=] { return bandwidth(conv, false, config); });
  add("Bandwidth/" + id(conv, true), [=] { return bandwidth(conv, true, config); });
  return cases;
}

}  // namespace bnlab::bench
