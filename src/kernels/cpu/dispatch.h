// Runtime CPU-capability dispatch for bnlab's hand-written CPU kernels.
//
// Every kernel source under src/kernels/cpu/ is compiled three times, with
// CPU_CAPABILITY set to DEFAULT, AVX2 or AVX512 (and the matching -m flags), so
// at::vec::Vectorized<T> uses the widest vectors the machine has — the scheme
// ATen uses for its own kernels. Each compilation registers its functions into
// a KernelStub; callers get the best variant the running CPU supports.
#pragma once

#include <array>
#include <cstddef>

namespace bnlab::kernels::cpu {

enum class Capability : int { kDefault = 0, kAVX2 = 1, kAVX512 = 2 };

/// The best capability this CPU supports, lowered by the environment variable
/// BNLAB_CPU_CAPABILITY=default|avx2|avx512 when set (for tests and benchmarks).
Capability cpu_capability();

/// Name of a capability ("DEFAULT", "AVX2", "AVX512").
const char* capability_name(Capability capability);

/// A kernel function pointer per capability.
template <typename Fn>
struct KernelStub {
  std::array<Fn, 3> variants{};

  /// The variant for the running CPU: the best registered one it supports.
  Fn get() const {
    for (int c = static_cast<int>(cpu_capability()); c >= 0; --c) {
      if (variants[static_cast<size_t>(c)] != nullptr) return variants[static_cast<size_t>(c)];
    }
    return nullptr;
  }
};

/// Registers `fn` as `stub`'s variant for `capability` at static-initialization time.
template <typename Fn>
struct KernelRegistration {
  KernelRegistration(KernelStub<Fn>& stub, Capability capability, Fn fn) {
    stub.variants[static_cast<size_t>(capability)] = fn;
  }
};

}  // namespace bnlab::kernels::cpu

// Inside a kernel source: the capability this compilation is for.
#if defined(CPU_CAPABILITY_AVX512)
#define BNLAB_THIS_CAPABILITY ::bnlab::kernels::cpu::Capability::kAVX512
#elif defined(CPU_CAPABILITY_AVX2)
#define BNLAB_THIS_CAPABILITY ::bnlab::kernels::cpu::Capability::kAVX2
#else
#define BNLAB_THIS_CAPABILITY ::bnlab::kernels::cpu::Capability::kDefault
#endif

#define BNLAB_CONCAT_IMPL(a, b) a##b
#define BNLAB_CONCAT(a, b) BNLAB_CONCAT_IMPL(a, b)

/// BNLAB_REGISTER_KERNEL(stub, fn): in a kernel source, makes `fn` the variant of
/// `stub` for the capability being compiled.
#define BNLAB_REGISTER_KERNEL(stub, fn)                                                   \
  static ::bnlab::kernels::cpu::KernelRegistration<decltype(&fn)> BNLAB_CONCAT(          \
      bnlab_kernel_registration_, __LINE__)(stub, BNLAB_THIS_CAPABILITY, &fn)
