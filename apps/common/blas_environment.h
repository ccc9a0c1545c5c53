// OpenBLAS settings the apps fix before anything else runs.
//
// OpenBLAS (Debian's 0.3.21) picks its CPU kernels at load time from cpuid,
// and falls back to its slowest SSE3 ("Prescott") kernels when cpuid does not
// report OSXSAVE — as some virtual machines do although the OS enables AVX
// and AVX-512 (Linux lists those flags in /proc/cpuinfo only then). On such a
// machine a 128×128 GEMM takes 4× longer. OpenBLAS reads its settings from the
// environment only when it loads, so the apps set them and restart themselves.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace bnlab::apps {

namespace detail {

inline std::set<std::string> cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string w; words >> w;) flags.insert(w);
    return flags;
  }
  return {};
}

}  // namespace detail

/// The OPENBLAS_CORETYPE for this CPU when OpenBLAS would misdetect it
/// (no OSXSAVE in cpuid, AVX-512 or AVX2 enabled by the OS); empty otherwise.
inline std::string openblas_coretype_override() {
  const auto flags = detail::cpu_flags();
  if (flags.empty() || flags.count("osxsave") != 0) return "";
  auto has = [&](std::initializer_list<const char*> names) {
    for (const char* n : names) {
      if (flags.count(n) == 0) return false;
    }
    return true;
  };
  if (has({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "fma"})) return "SkylakeX";
  if (has({"avx2", "fma"})) return "Haswell";
  return "";
}

/// Sets OPENBLAS_CORETYPE where OpenBLAS would misdetect the CPU and, with
/// `single_thread`, OPENBLAS_NUM_THREADS=1 (each only when the user has not set
/// it), then re-executes the program once so that OpenBLAS loads with them.
inline void fix_blas_environment(char** argv, bool single_thread) {
  if (std::getenv("BNLAB_BLAS_ENVIRONMENT_SET") != nullptr) return;
  bool changed = false;
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    const std::string coretype = openblas_coretype_override();
    if (!coretype.empty()) {
      ::setenv("OPENBLAS_CORETYPE", coretype.c_str(), 1);
      changed = true;
    }
  }
  if (single_thread && std::getenv("OPENBLAS_NUM_THREADS") == nullptr) {
    ::setenv("OPENBLAS_NUM_THREADS", "1", 1);
    changed = true;
  }
  if (!changed) return;
  ::setenv("BNLAB_BLAS_ENVIRONMENT_SET", "1", 1);
  ::execv("/proc/self/exe", argv);  // on failure, go on with the environment as it was at load
}

}  // namespace bnlab::apps
