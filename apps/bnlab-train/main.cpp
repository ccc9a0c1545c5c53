// bnlab-train: training runs, the activation × BatchNorm study and the probe.
// Thin: parses flags and the config file, then calls bnlab::experiment.
#include <bnlab/distributed/process_group.h>
#include <bnlab/experiment/config.h>
#include <bnlab/experiment/probe.h>
#include <bnlab/experiment/run.h>
#include <bnlab/experiment/study.h>
#include <bnlab/train/trainer.h>

#include "bnlab-train/local_launcher.h"
#include "common/allocator_settings.h"
#include "common/blas_environment.h"
#include "common/log_to_stderr.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace ex = bnlab::experiment;

namespace {

constexpr int kUsageError = 2;

// Runs `body`, turning a configuration error into the usage exit status and
// any other error into 1, each with a one-line message.
template <typename Body>
int exit_status_of(Body&& body) {
  try {
    return body();
  } catch (const ex::ConfigError& e) {
    fmt::print(stderr, "bnlab-train: {}\n", e.what());
    return kUsageError;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bnlab-train: {}\n", e.what());
    return 1;
  }
}

std::string flag(const char* key) {
  std::string f = std::string("--") + key;
  for (auto& c : f) c = c == '_' ? '-' : c;
  return f;
}

// One option per field, bound to it: the config file's values are the
// defaults, flags override them.
template <typename Config, typename Visit>
void add_options(CLI::App& app, Config& config, Visit visit) {
  visit(config, [&](const char* key, auto& field, const char* help) {
    using T = std::decay_t<decltype(field)>;
    if constexpr (std::is_same_v<T, bool>) {
      app.add_flag(flag(key), field, help);
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      app.add_option(flag(key), field, help)->delimiter(',')->capture_default_str();
    } else {
      app.add_option(flag(key), field, help)->capture_default_str();
    }
  });
}

// The --config file named on the command line (before CLI11 parses it, so
// its values can be the flags' defaults).
std::string config_path(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) return argv[i + 1];
    if (std::strncmp(argv[i], "--config=", 9) == 0) return argv[i] + 9;
  }
  return "";
}

std::string subcommand_of(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "study" || a == "probe") return a;
  }
  return "";
}

void print_probe(const ex::ProbeResult& r, const ex::ProbeConfig& c) {
  fmt::print("tanh(x·W), x: {} random inputs of dimension {}, W: {}x{} with unit-variance entries\n", c.inputs, c.width,
             c.width, c.width);
  fmt::print("  without BatchNorm: pre-activation std {:8.2f}, saturated (|tanh| > 0.97) {:5.1f}%\n",
             r.without_batch_norm.preactivation_std, r.without_batch_norm.saturation_pct);
  fmt::print("  with BatchNorm:    pre-activation std {:8.2f}, saturated (|tanh| > 0.97) {:5.1f}%\n",
             r.with_batch_norm.preactivation_std, r.with_batch_norm.saturation_pct);
  fmt::print("histograms: {}/probe.json, {}/probe_histograms.csv\n", c.out, c.out);
}

}  // namespace

int main(int argc, char** argv) {
  bnlab::apps::fix_blas_environment(argv, /*single_thread=*/false);
  bnlab::apps::keep_freed_memory_for_reuse();
  bnlab::apps::log_to_stderr();
  const std::string sub = subcommand_of(argc, argv);
  const std::string config_file = config_path(argc, argv);
  ex::RunConfig run;
  ex::StudyConfig study = ex::default_study_config();
  ex::ProbeConfig probe;
  try {
    if (!config_file.empty()) {
      const auto j = ex::read_json_file(config_file);
      if (sub == "study") {
        study = ex::study_config_from_json(j, study);
      } else if (sub == "probe") {
        probe = ex::probe_config_from_json(j, probe);
      } else {
        run = ex::run_config_from_json(j, run);
      }
    }
  } catch (const ex::ConfigError& e) {
    fmt::print(stderr, "bnlab-train: {}\n", e.what());
    return kUsageError;
  }

  CLI::App app{"bnlab-train: train MLPs with bnlab's BatchNorm and activations, recording every layer's saturation "
               "and gradients.\nWithout a subcommand: one training run. Options may also come from a JSON --config "
               "file (keys as the flags, '_' for '-'); flags override it."};
  app.set_version_flag("--version", "bnlab-train 0.1");
  std::string unused_config;
  app.add_option("--config", unused_config, "JSON file of option values (flags override it)");
  add_options(app, run, [](auto& c, auto&& f) { ex::visit_fields(c, f); });
  int nproc = 0;
  app.add_option("--nproc", nproc,
                 "data-parallel: start N local ranks on loopback (torchrun-style), BatchNorm synchronized across them; "
                 "or launch under torchrun --no-python")
      ->check(CLI::NonNegativeNumber);

  auto* study_cmd = app.add_subcommand("study",
      "train the grid activation x {without, with} BatchNorm on the built-in data, from a deliberately poor initial "
      "scale; print the table, write summaries and report.html");
  study_cmd->add_option("--config", unused_config, "JSON file of option values (flags override it)");
  add_options(*study_cmd, study.base, [](auto& c, auto&& f) { ex::visit_fields(c, f); });
  study_cmd->add_option("--activations", study.activations, "activations of the grid, comma separated")
      ->delimiter(',')->capture_default_str();
  study_cmd->add_option("--batch-norms", study.batch_norms, "BatchNorm placements of the grid: none, before, after")
      ->delimiter(',')->capture_default_str();

  auto* probe_cmd = app.add_subcommand("probe",
      "tanh over a random unit-variance weight matrix: saturation and histograms, without and with BatchNorm");
  probe_cmd->add_option("--config", unused_config, "JSON file of option values (flags override it)");
  add_options(*probe_cmd, probe, [](auto& c, auto&& f) { ex::visit_fields_probe(c, f); });
  app.require_subcommand(0, 1);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "bnlab-train: {}\nRun with --help for the options.\n", e.what());
    return kUsageError;
  }

  // Launched data-parallel: which rank this is (only rank 0 prints results).
  std::optional<bnlab::distributed::LaunchEnvironment> launch;
  try {
    launch = bnlab::distributed::LaunchEnvironment::from_environment();
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "bnlab-train: {}\n", e.what());
    return kUsageError;
  }
  if (nproc > 1) {
    if (*study_cmd || *probe_cmd) {
      fmt::print(stderr, "bnlab-train: --nproc trains one run data-parallel; expected no subcommand, got {}\n",
                 *study_cmd ? "study" : "probe");
      return kUsageError;
    }
    if (launch) {
      fmt::print(stderr, "bnlab-train: --nproc starts the ranks itself; expected it outside torchrun (WORLD_SIZE "
                         "is already set to {})\n", launch->world_size);
      return kUsageError;
    }
    return exit_status_of([&] {
      ex::validate(run);
      return bnlab::apps::launch_local_ranks(nproc, bnlab::apps::strip_launcher_flags(argc, argv), run.dist_timeout,
                                             /*grace_s=*/std::min(run.dist_timeout, 10.0));
    });
  }
  const bool lead = !launch || launch->rank == 0;
  if (launch && launch->world_size > 1) {
    spdlog::set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%e] [rank {}] [%^%l%$] %v", launch->rank));
    if (!lead) spdlog::set_level(spdlog::level::warn);
  }

  bnlab::train::install_interrupt_handler();
  return exit_status_of([&] {
    if (*probe_cmd) {
      ex::validate(probe);
      print_probe(ex::run_probe(probe), probe);
      return 0;
    }
    if (*study_cmd) {
      ex::validate(study);
      const auto result = ex::run_study(study);
      fmt::print("\n{}", ex::format_study_table(result.runs));
      fmt::print("\nsteps→target: first step the smoothed training loss reaches {}; sat: saturation % of the first and "
                 "last hidden activation; grad last/1st: gradient norm at the last over the first hidden activation.\n",
                 study.base.target_loss);
      fmt::print("report: {}/report.html   summaries: {}/summary.csv, summary.json\n", study.base.out, study.base.out);
      return result.interrupted ? 130 : 0;
    }
    ex::validate(run);
    const auto summary = ex::run_training(run);
    if (lead) {
      fmt::print("\n{}", ex::format_study_table({summary}));
      fmt::print("metrics: {}/  (metrics.csv, metrics.jsonl, tb/, summary.json)\n", run.out);
    }
    return summary.interrupted ? 130 : 0;
  });
}
