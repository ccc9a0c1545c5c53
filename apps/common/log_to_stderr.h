// The apps print their results (tables, paths) on stdout and log on stderr,
// so `bnlab-train study > table.txt` keeps the table clean.
#pragma once

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>

namespace bnlab::apps {

inline void log_to_stderr() {
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
}

}  // namespace bnlab::apps
