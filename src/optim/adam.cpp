#include "bnlab/optim/adam.h"

#include "kernels/cpu/adam_kernel.h"
#include "optim/fused_step.h"

#include <ATen/ATen.h>

#include <cmath>
#include <memory>
#include <vector>

namespace bnlab::kernels::cpu {
KernelStub<AdamStepFn> adam_step_stub;
}  // namespace bnlab::kernels::cpu

namespace bnlab::optim {

namespace {

using detail::fusable;

// The step of Adam (decoupled = false) or AdamW (true) over every parameter
// group: the fused kernel where it applies, torch::optim's ops elsewhere.
template <typename Options, typename ParamState, typename StateMap>
torch::Tensor adam_family_step(const char* op, std::vector<torch::optim::OptimizerParamGroup>& groups,
                               StateMap& state_map, detail::StateKeyCache& state_key, bool decoupled,
                               UpdateStatistics* statistics, const torch::optim::Optimizer::LossClosure& closure) {
  torch::NoGradGuard no_grad;
  const torch::Tensor loss = detail::evaluate_closure(closure);
  auto kernel = kernels::cpu::adam_step_stub.get();
  for (auto& group : groups) {
    const auto& o = static_cast<const Options&>(group.options());
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), op, ": expected dense gradients, got a sparse gradient for a parameter of shape ",
                  p.sizes(), " (use torch::optim::SparseAdam)");
      const auto& key = state_key(p);
      auto found = state_map.find(key);
      if (found == state_map.end()) {
        auto fresh = std::make_unique<ParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        if (o.amsgrad()) fresh->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        found = state_map.insert_or_assign(key, std::move(fresh)).first;
      }
      auto& state = static_cast<ParamState&>(*found->second);
      state.step(state.step() + 1);
      const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(state.step()));
      const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(state.step()));
      const double step_size = o.lr() / bias_correction1;
      const auto dtype = p.scalar_type();
      const bool fused = kernel != nullptr && fusable(p, p) && fusable(grad, p) && fusable(state.exp_avg(), p) &&
                         fusable(state.exp_avg_sq(), p) && (!o.amsgrad() || fusable(state.max_exp_avg_sq(), p));
      if (fused) {
        kernels::cpu::AdamJob job;
        job.param = p.data_ptr();
        job.grad = grad.data_ptr();
        job.exp_avg = state.exp_avg().data_ptr();
        job.exp_avg_sq = state.exp_avg_sq().data_ptr();
        job.max_exp_avg_sq = o.amsgrad() ? state.max_exp_avg_sq().data_ptr() : nullptr;
        job.numel = p.numel();
        job.is_double = dtype == torch::kDouble;
        job.lr = o.lr();
        job.beta1 = beta1;
        job.beta2 = beta2;
        job.eps = o.eps();
        job.weight_decay = decoupled ? 0.0 : o.weight_decay();
        job.decoupled_decay = decoupled && o.weight_decay() != 0 ? 1 - o.lr() * o.weight_decay() : 1.0;
        job.sqrt_bias_correction2 = std::sqrt(bias_correction2);
        job.step_size = step_size;
        job.stats = statistics != nullptr ? statistics->claim(p) : nullptr;
        kernel(job);
        // torch::optim::Adam's in-place ops (p.addcdiv_, exp_avg.mul_, ...) bump these.
        detail::bump_versions({&p, &state.exp_avg(), &state.exp_avg_sq(),
                               o.amsgrad() ? &state.max_exp_avg_sq() : nullptr});
        continue;
      }
      // torch::optim's own ops, for any device, dtype or layout.
      if (decoupled && o.weight_decay() != 0) p.mul_(1 - o.lr() * o.weight_decay());
      if (!decoupled && o.weight_decay() != 0) grad = grad.add(p, o.weight_decay());
      auto& exp_avg = state.exp_avg();
      auto& exp_avg_sq = state.exp_avg_sq();
      exp_avg.mul_(beta1).add_(grad, 1 - beta1);
      exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      torch::Tensor second = exp_avg_sq;
      if (o.amsgrad()) {
        auto& max_exp_avg_sq = state.max_exp_avg_sq();
        torch::max_out(max_exp_avg_sq, exp_avg_sq, max_exp_avg_sq);
        second = max_exp_avg_sq;
      }
      const auto denom = (second.sqrt() / std::sqrt(bias_correction2)).add_(o.eps());
      p.addcdiv_(exp_avg, denom, -step_size);
    }
  }
  return loss;
}

}  // namespace

torch::Tensor Adam::step(LossClosure closure) {
  return adam_family_step<torch::optim::AdamOptions, torch::optim::AdamParamState>(
      "bnlab::optim::Adam", param_groups_, state_, state_key_, /*decoupled=*/false, update_statistics_.get(),
      closure);
}

torch::Tensor AdamW::step(LossClosure closure) {
  return adam_family_step<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(
      "bnlab::optim::AdamW", param_groups_, state_, state_key_, /*decoupled=*/true, update_statistics_.get(),
      closure);
}

}  // namespace bnlab::optim
