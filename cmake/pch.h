// Precompiled header shared by bnlab's targets (see cmake/BnlabCompilerCache.cmake).
// Only heavy, stable third-party headers belong here; never bnlab's own.
#pragma once
#include <torch/torch.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
