#include "assert_close.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

namespace bnlab_test {

Tolerance default_tolerance(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat: return {1.3e-6, 1e-5};
    case torch::kDouble: return {1e-7, 1e-7};
    case torch::kBFloat16: return {1.6e-2, 1e-5};
    case torch::kHalf: return {1e-3, 1e-5};
    default: return {0.0, 0.0};
  }
}

::testing::AssertionResult assert_close(const torch::Tensor& actual, const torch::Tensor& expected,
                                        Tolerance tol, ErrorStats* stats, const std::string& what) {
  if (!actual.defined() || !expected.defined()) {
    return ::testing::AssertionFailure()
           << what << ": " << (actual.defined() ? "expected" : "actual") << " tensor is undefined";
  }
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << what << ": shape mismatch: actual " << actual.sizes() << ", expected "
           << expected.sizes();
  }
  if (actual.scalar_type() != expected.scalar_type()) {
    return ::testing::AssertionFailure()
           << what << ": dtype mismatch: actual " << actual.scalar_type() << ", expected "
           << expected.scalar_type();
  }
  if (actual.numel() == 0) return ::testing::AssertionSuccess();
  auto a = actual.detach().to(torch::kCPU, torch::kDouble).contiguous().reshape(-1);
  auto e = expected.detach().to(torch::kCPU, torch::kDouble).contiguous().reshape(-1);
  auto diff = (a - e).abs();
  auto bound = tol.atol + tol.rtol * e.abs();
  auto ratio = diff / bound;
  // Matching NaNs (and matching infinities) are equal.
  auto both_nan = a.isnan().logical_and(e.isnan());
  auto same_inf = a.isinf().logical_and(a.eq(e));
  ratio = torch::where(both_nan.logical_or(same_inf), torch::zeros_like(ratio), ratio);
  diff = torch::where(both_nan.logical_or(same_inf), torch::zeros_like(diff), diff);
  ratio = torch::where(diff.eq(0), torch::zeros_like(ratio), ratio);  // exact match, even at tolerance 0
  ratio = torch::where(ratio.isnan(), torch::full_like(ratio, INFINITY), ratio);
  const int64_t worst = ratio.argmax().item<int64_t>();
  const double worst_ratio = ratio[worst].item<double>();
  const double max_abs = diff.max().item<double>();
  if (stats != nullptr) {
    stats->max_abs = std::max(stats->max_abs, max_abs);
    if (worst_ratio > stats->max_ratio) {
      stats->max_ratio = worst_ratio;
      stats->where = what;
    }
  }
  if (worst_ratio <= 1.0) return ::testing::AssertionSuccess();
  const int64_t mismatched = (ratio > 1.0).sum().item<int64_t>();
  std::ostringstream msg;
  msg.precision(10);
  msg << what << ": " << mismatched << " / " << a.numel() << " elements not close (rtol "
      << tol.rtol << ", atol " << tol.atol << "); worst at flat index " << worst << ": actual "
      << a[worst].item<double>() << ", expected " << e[worst].item<double>() << " (|diff| "
      << diff[worst].item<double>() << ", allowed " << bound[worst].item<double>()
      << "); max |diff| " << max_abs;
  return ::testing::AssertionFailure() << msg.str();
}

::testing::AssertionResult assert_close_to_pytorch(const torch::Tensor& actual,
                                                   const torch::Tensor& expected,
                                                   const torch::Tensor& exact, Tolerance tol,
                                                   ErrorStats* stats, const std::string& what) {
  if (!exact.defined() || !actual.defined() || !expected.defined() ||
      actual.sizes() != expected.sizes() || exact.sizes() != expected.sizes()) {
    return assert_close(actual, expected, tol, stats, what);
  }
  auto a = actual.detach().to(torch::kCPU, torch::kDouble).contiguous().reshape(-1);
  auto e = expected.detach().to(torch::kCPU, torch::kDouble).contiguous().reshape(-1);
  auto x = exact.detach().to(torch::kCPU, torch::kDouble).contiguous().reshape(-1);
  auto misses = (a - e).abs() > tol.atol + tol.rtol * e.abs();
  auto at_least_as_accurate = (a - x).abs() <= (e - x).abs();
  auto rescued = misses.logical_and(at_least_as_accurate);
  const int64_t n_rescued = rescued.sum().item<int64_t>();
  if (n_rescued == 0) return assert_close(actual, expected, tol, stats, what);
  if (stats != nullptr) stats->closer_than_pytorch += n_rescued;
  // Judge the remaining elements as usual: replace the rescued ones by PyTorch's value.
  auto patched = torch::where(rescued.reshape(actual.sizes()), expected.detach().to(actual.scalar_type()),
                              actual.detach());
  return assert_close(patched, expected, tol, stats, what);
}

::testing::AssertionResult assert_close(const torch::Tensor& actual,
                                        const torch::Tensor& expected) {
  const auto dtype = expected.defined() ? expected.scalar_type() : torch::kFloat;
  return assert_close(actual, expected, default_tolerance(dtype));
}

}  // namespace bnlab_test
