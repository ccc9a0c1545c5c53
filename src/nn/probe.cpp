#include "bnlab/nn/probe.h"

#include <torch/torch.h>

namespace bnlab::nn {

void Probeable::capture(const torch::Tensor& input, const torch::Tensor& output) const {
  if (!probe_ || !probe_->capture_tensors) return;
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
