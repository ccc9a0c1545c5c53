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
};

/// Compares shapes, dtypes and values; NaNs must match NaNs. On failure the
/// message gives the worst element, its index and both values. When `stats` is
/// given, it is updated with this comparison's errors (labelled `what`).
::testing::AssertionResult assert_close(const torch::Tensor& actual, const torch::Tensor& expected,
                                        Tolerance tolerance, ErrorStats* stats = nullptr,
                                        const std::string& what = "");

/// Same with the default tolerance of `expected`'s dtype.
::testing::AssertionResult assert_close(const torch::Tensor& actual,
                                        const torch::Tensor& expected);

}  // namespace bnlab_test
