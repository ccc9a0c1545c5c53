// glibc malloc settings for training loops.
//
// A training step frees its activations and gradients and allocates the same
// sizes again in the next step. With glibc's defaults, blocks from 128 KiB up
// are mmap'd (the threshold adapts upward only as such blocks are freed) and
// free memory at the top of the heap above 128 KiB is returned to the kernel,
// so every step faults its pages back in and the kernel zeroes them: bnlab-
// train's default MLP took ~75 page faults per step (glibc defaults) against ~4
// with the settings below, and its step got 10–15% faster. Memory freed by one
// step stays in the process for the next, which a training loop reuses anyway.
//
// Process-wide, so only the apps set it; the library never does. A user who
// tunes malloc (GLIBC_TUNABLES, MALLOC_*_ variables) keeps their settings.
#pragma once

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace bnlab::apps {

/// Keeps freed blocks of up to 32 MiB (glibc's largest mmap threshold) in the
/// heap, and trims the heap's top only past 1 GiB of free memory.
inline void keep_freed_memory_for_reuse() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "malloc") != nullptr) return;
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr || std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr) return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace bnlab::apps
