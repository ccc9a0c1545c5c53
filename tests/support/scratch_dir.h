// A scratch folder per test process, removed when the process's tests end,
// so test runs leave nothing behind in the temporary directory.
#pragma once

#include <filesystem>
#include <string>

namespace bnlab_test {

/// <tmp>/bnlab_tests_<pid>/<name>, created empty (any previous content removed).
std::filesystem::path scratch_dir(const std::string& name);

}  // namespace bnlab_test
