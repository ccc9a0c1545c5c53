// torch.testing.assert_close for the C++ tests.
#pragma once

#include <gtest/gtest.h>
#include <torch/types.h>

#include <string>

namespace bnlab_test {

/// |actual − expected| ≤ atol + rtol·|expected|, elementwise.
struct Tolerance {
  double rtol;
  double atol;
};

/// torch.testing.assert_close's default tolerances for `dtype`
/// (float32: rtol 1.3e-6, atol 1e-5; float64: 1e-7, 1e-7; bfloat16: 1.6e-2, 1e-5).
Tolerance default_tolerance(torch::ScalarType dtype);

/// The worst error seen across many comparisons, for reporting.
struct ErrorStats {
  double max_abs = 0.0;    ///< largest |actual − expected|
  double max_ratio = 0.0;  ///< largest |actual − expected| / (atol + rtol·|expected|); ≤ 1 passes
  std::string where;       ///< the comparison that gave max_ratio
  int64_t closer_than_pytorch = 0;  ///< elements accepted by assert_close_to_pytorch's second clause
};

/// Compares shapes, dtypes and values; NaNs must match NaNs. On failure the
/// message gives the worst element, its index and both values. When `stats` is
/// given, it is updated with this comparison's errors (labelled `what`).
::testing::AssertionResult assert_close(const torch::Tensor& actual, const torch::Tensor& expected,
                                        Tolerance tolerance, ErrorStats* stats = nullptr,
                                        const std::string& what = "");

/// Compares with PyTorch's result `expected` (in the tested dtype) and, when
/// `exact` (PyTorch's float64 evaluation of the same inputs, cast to that
/// dtype) is defined, accepts an element that misses `expected` by more than
/// the tolerance if it is at least as close to `exact` as `expected` is —
/// i.e. where PyTorch's own rounding strays, bnlab must be at least as accurate.
::testing::AssertionResult assert_close_to_pytorch(const torch::Tensor& actual,
                                                   const torch::Tensor& expected,
                                                   const torch::Tensor& exact, Tolerance tolerance,
                                                   ErrorStats* stats, const std::string& what);

/// Same with the default tolerance of `expected`'s dtype.
::testing::AssertionResult assert_close(const torch::Tensor& actual,
                                        const torch::Tensor& expected);

}  // namespace bnlab_test
