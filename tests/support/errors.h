// Helpers to test error messages.
#pragma once

#include <c10/util/Exception.h>
#include <gmock/gmock.h>

#include <string>

namespace bnlab_test {

/// The message of the c10::Error (TORCH_CHECK) or std::exception `f` throws,
/// without the C++ backtrace; "(no error)" when it does not throw.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace bnlab_test
