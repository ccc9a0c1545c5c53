#include "kernels/cpu/dispatch.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <string>

namespace bnlab::kernels::cpu {

namespace {

Capability detect() {
  Capability best = Capability::kDefault;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Capability::kAVX2;
  // ATen's AVX512 vectors need F, BW, VL and DQ.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    best = Capability::kAVX512;
  }
#endif
  if (const char* env = std::getenv("BNLAB_CPU_CAPABILITY")) {
    const std::string wanted(env);
    Capability requested = best;
    if (wanted == "default" || wanted == "DEFAULT") {
      requested = Capability::kDefault;
    } else if (wanted == "avx2" || wanted == "AVX2") {
      requested = Capability::kAVX2;
    } else if (wanted == "avx512" || wanted == "AVX512") {
      requested = Capability::kAVX512;
    } else {
      spdlog::warn("BNLAB_CPU_CAPABILITY={}: expected default, avx2 or avx512; using {}", wanted,
                   capability_name(best));
    }
    if (static_cast<int>(requested) <= static_cast<int>(best)) best = requested;
  }
  return best;
}

}  // namespace

Capability cpu_capability() {
  static const Capability capability = detect();
  return capability;
}

const char* capability_name(Capability capability) {
  switch (capability) {
    case Capability::kAVX512: return "AVX512";
    case Capability::kAVX2: return "AVX2";
    default: return "DEFAULT";
  }
}

}  // namespace bnlab::kernels::cpu
