#include "bnlab/nn/probe.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace bnlab::nn {

std::vector<double> sample_quantiles(const float* sample, int64_t count, const std::vector<double>& qs) {
  std::vector<double> out(qs.size(), std::nan(""));
  if (count <= 0) return out;
  std::vector<float> v(sample, sample + count);
  if (std::any_of(v.begin(), v.end(), [](float f) { return std::isnan(f); })) return out;
  for (size_t k = 0; k < qs.size(); ++k) {
    // torch.quantile's definition: linear interpolation at position q·(n − 1).
    const double pos = qs[k] * static_cast<double>(count - 1);
    const auto lo = static_cast<std::ptrdiff_t>(std::floor(pos));
    std::nth_element(v.begin(), v.begin() + lo, v.end());
    const double a = v[static_cast<size_t>(lo)];
    const double b = lo + 1 < count ? *std::min_element(v.begin() + lo + 1, v.end()) : a;
    out[k] = a + (pos - static_cast<double>(lo)) * (b - a);
  }
  return out;
}

void Probeable::capture(const torch::Tensor& input, const torch::Tensor& output) const {
  if (!probe_) return;
  if (output.grad_fn()) probe_->forward_sequence_nr = static_cast<int64_t>(output.grad_fn()->sequence_nr());
  if (!probe_->capture_tensors) return;
  probe_->input = input.detach();
  probe_->output = output.detach();
  probe_->grad_output = torch::Tensor();
  probe_->grad_input = torch::Tensor();
  if (output.requires_grad()) {
    // A weak reference: the hook must not keep the probe (and its recorder) alive.
    std::weak_ptr<LayerProbe> weak = probe_;
    output.register_hook([weak](const torch::Tensor& grad) {
      if (auto p = weak.lock()) p->grad_output = grad.detach();
    });
  }
  if (input.requires_grad()) {
    std::weak_ptr<LayerProbe> weak = probe_;
    input.register_hook([weak](const torch::Tensor& grad) {
      if (auto p = weak.lock()) p->grad_input = grad.detach();
    });
  }
}

}  // namespace bnlab::nn
