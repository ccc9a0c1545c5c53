#include "bnlab/optim/sgd.h"

#include "kernels/cpu/sgd_kernel.h"
#include "optim/fused_step.h"

#include <ATen/ATen.h>

#include <memory>

namespace bnlab::kernels::cpu {
KernelStub<SgdStepFn> sgd_step_stub;
}  // namespace bnlab::kernels::cpu

namespace bnlab::optim {

using detail::fusable;

torch::Tensor SGD::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  const torch::Tensor loss = detail::evaluate_closure(closure);
  auto kernel = kernels::cpu::sgd_step_stub.get();
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    const kernels::cpu::SgdHyper hyper{o.lr(), o.momentum(), o.dampening(), o.weight_decay(), o.nesterov()};
    for (auto& p : group.params()) {
      auto keep_buffer = [&](const torch::Tensor& momentum_buffer) {
        auto fresh = std::make_unique<torch::optim::SGDParamState>();
        fresh->momentum_buffer(momentum_buffer);
        state_[state_key_(p)] = std::move(fresh);
      };
      const auto& grad = p.grad();
      if (!grad.defined()) continue;
      const auto dtype = p.scalar_type();
      torch::Tensor buffer;
      bool first_step = false;
      if (o.momentum() != 0) {
        auto found = state_.find(state_key_(p));
        if (found != state_.end()) buffer = static_cast<torch::optim::SGDParamState&>(*found->second).momentum_buffer();
      }
      const bool fused = kernel != nullptr && fusable(p, p) && fusable(grad, p) &&
                         (o.momentum() == 0 || !buffer.defined() || fusable(buffer, p));
      if (fused) {
        if (o.momentum() != 0 && !buffer.defined()) {
          // First step: the buffer starts as d (the kernel writes it).
          buffer = at::empty_like(p, at::MemoryFormat::Contiguous);
          first_step = true;
        }
        kernels::cpu::SgdJob job;
        job.param = p.data_ptr();
        job.grad = grad.data_ptr();
        job.momentum_buffer = o.momentum() != 0 ? buffer.data_ptr() : nullptr;
        job.numel = p.numel();
        job.is_double = dtype == torch::kDouble;
        job.first_step = first_step;
        job.stats = update_statistics_ != nullptr ? update_statistics_->claim(p) : nullptr;
        // Updated now, in order, like the ops below (a parameter listed twice is updated twice).
        kernel(job, hyper);
        // Stored once written, so a failure above leaves no uninitialized state.
        if (first_step) keep_buffer(buffer);
        // torch::optim::SGD writes θ through .data(), which has its own
        // version counter: like it, no version bump on θ.
        detail::bump_versions({&buffer});
        continue;
      }
      // torch::optim::SGD's own ops, for any device, dtype or layout.
      auto d_p = grad.data();
      if (o.weight_decay() != 0) d_p = d_p.add(p.data(), o.weight_decay());
      if (o.momentum() != 0) {
        if (!buffer.defined()) {
          buffer = torch::clone(d_p).detach();
          keep_buffer(buffer);
        } else {
          buffer.mul_(o.momentum()).add_(d_p, 1 - o.dampening());
        }
        d_p = o.nesterov() ? d_p.add(buffer, o.momentum()) : buffer;
      }
      p.data().add_(d_p, -1 * o.lr());
    }
  }
  return loss;
}

}  // namespace bnlab::optim
