#include "kernels/reduce.h"

#include "kernels/cpu/reduce_kernel.h"

#include <ATen/ATen.h>

namespace bnlab::kernels {

namespace cpu {
KernelStub<ParameterStatsFn> parameter_stats_stub;
KernelStub<SumSquaresFn> sum_squares_stub;
KernelStub<ParallelWidthFn> parallel_width_stub;
}  // namespace cpu

namespace {

bool cpu_float_contiguous(const torch::Tensor& t, torch::ScalarType dtype) {
  return t.device().is_cpu() && t.scalar_type() == dtype && t.is_contiguous() &&
         (dtype == torch::kFloat || dtype == torch::kDouble);
}

}  // namespace

namespace {

// The CPU kernel's job for a request, or nullopt when it needs the composite path.
c10::optional<cpu::ParameterStatsJob> cpu_job(const ParameterStatsRequest& r) {
  const auto dtype = r.param.scalar_type();
  if (!r.row.device().is_cpu() || !r.row.is_contiguous() || !cpu_float_contiguous(r.param, dtype) ||
      !cpu_float_contiguous(r.snapshot, dtype) || (r.grad.defined() && !cpu_float_contiguous(r.grad, dtype))) {
    return c10::nullopt;
  }
  cpu::ParameterStatsJob job;
  job.param = r.param.data_ptr();
  job.grad = r.grad.defined() ? r.grad.data_ptr() : nullptr;
  job.snapshot = r.snapshot.data_ptr();
  job.numel = r.param.numel();
  job.is_double = dtype == torch::kDouble;
  job.out = r.row.data_ptr<double>();
  return job;
}

void parameter_stats_composite(const torch::Tensor& param, const torch::Tensor& grad,
                               const torch::Tensor& snapshot, const torch::Tensor& row);

}  // namespace

void parameter_stats_many(const std::vector<ParameterStatsRequest>& requests) {
  torch::NoGradGuard no_grad;
  auto kernel = cpu::parameter_stats_stub.get();
  std::vector<cpu::ParameterStatsJob> jobs;
  jobs.reserve(requests.size());
  for (const auto& r : requests) {
    auto job = kernel != nullptr ? cpu_job(r) : c10::nullopt;
    if (job.has_value()) {
      jobs.push_back(*job);
    } else {
      parameter_stats_composite(r.param, r.grad, r.snapshot, r.row);
    }
  }
  if (!jobs.empty()) kernel(jobs.data(), static_cast<int64_t>(jobs.size()));
}

void parameter_stats(const torch::Tensor& param, const torch::Tensor& grad,
                     const torch::Tensor& snapshot, const torch::Tensor& row) {
  parameter_stats_many({ParameterStatsRequest{param, grad, snapshot, row}});
}

namespace {

void parameter_stats_composite(const torch::Tensor& param, const torch::Tensor& grad,
                               const torch::Tensor& snapshot, const torch::Tensor& row) {
  // Composite: a handful of device ops, no host sync.
  auto p = param.detach().to(torch::kDouble);
  auto delta = p - snapshot.to(torch::kDouble);
  namespace ps = param_stat;
  row[ps::kSum].copy_(p.sum());
  row[ps::kSumSq].copy_((p * p).sum());
  row[ps::kDeltaSum].copy_(delta.sum());
  row[ps::kDeltaSumSq].copy_((delta * delta).sum());
  row[ps::kNonFiniteParam].copy_(p.isfinite().logical_not().sum());
  if (grad.defined()) {
    auto g = grad.detach().to(torch::kDouble);
    row[ps::kGradSum].copy_(g.sum());
    row[ps::kGradSumSq].copy_((g * g).sum());
    row[ps::kNonFiniteGrad].copy_(g.isfinite().logical_not().sum());
  } else {
    row.slice(0, ps::kGradSum, ps::kGradSumSq + 1).zero_();
    row[ps::kNonFiniteGrad].zero_();
  }
  snapshot.copy_(param.detach());
}

}  // namespace

void sum_squares_and_nonfinite(const torch::Tensor& t, const torch::Tensor& row, int64_t sum_slot,
                               int64_t nonfinite_slot) {
  torch::NoGradGuard no_grad;
  auto kernel = cpu::sum_squares_stub.get();
  if (kernel != nullptr && row.device().is_cpu() && t.device().is_cpu() &&
      t.is_non_overlapping_and_dense() &&
      (t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble)) {
    double out[2];
    kernel(t, out);
    auto* r = row.data_ptr<double>();
    r[sum_slot] = out[0];
    r[nonfinite_slot] = out[1];
    return;
  }
  auto d = t.detach().to(torch::kDouble);
  row[sum_slot].copy_((d * d).sum());
  row[nonfinite_slot].copy_(d.isfinite().logical_not().sum());
}

}  // namespace bnlab::kernels
