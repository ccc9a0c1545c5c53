// bnlab-bench: bnlab's kernels and training step side by side with LibTorch's
// native ones and with eager PyTorch, interleaved, as ratios (see README,
// "Performance"). Google Benchmark runs and reports the comparisons; each one
// alternates its two sides itself.
#include "bnlab-bench/cases.h"
#include "common/allocator_settings.h"
#include "common/blas_environment.h"
#include "common/log_to_stderr.h"

#include <bnlab/io/atomic_file.h>
#include <bnlab/version.h>

#include <CLI/CLI.hpp>
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#ifndef BNLAB_BENCH_PYTHON
#define BNLAB_BENCH_PYTHON "/usr/bin/python3"
#endif
#ifndef BNLAB_BENCH_PYTHON_SCRIPT
#define BNLAB_BENCH_PYTHON_SCRIPT "python_step.py"
#endif

namespace bb = bnlab::bench;

namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

std::string format_time(double s) {
  if (!std::isfinite(s)) return "-";
  if (s >= 1e-3) return fmt::format("{:.3f} ms", s * 1e3);
  return fmt::format("{:.1f} µs", s * 1e6);
}

void print_summary(const std::vector<bb::Comparison>& results, const std::string& machine) {
  fmt::print("\nbnlab-bench summary ({}). ratio = ours / theirs, median over interleaved rounds [lowest–highest round]\n",
             machine);
  fmt::print("{:<52} {:>11} {:>11} {:>21} {:>6}  {}\n", "comparison", "ours", "theirs", "ratio", "goal", "");
  fmt::print("{}\n", std::string(112, '-'));
  for (const auto& c : results) {
    if (!c.error.empty()) {
      fmt::print("{:<52} error: {}\n", c.name, c.error);
      continue;
    }
    const std::string goal = c.goal > 0 ? fmt::format("≤{:.2f}", c.goal) : "";
    const std::string verdict = c.goal > 0 ? (c.ratio <= c.goal ? "met" : "MISSED") : "";
    fmt::print("{:<52} {:>11} {:>11} {:>6.3f} [{:.2f}–{:.2f}] {:>6}  {}\n", c.name, format_time(c.ours_s),
               format_time(c.theirs_s), c.ratio, c.ratio_low, c.ratio_high, goal, verdict);
    if (!c.extra.empty()) fmt::print("{:<52} {}\n", "", c.extra);
  }
}

nlohmann::json to_json(const bb::Comparison& c) {
  return {{"name", c.name},         {"ours", c.ours},         {"theirs", c.theirs},
          {"goal", c.goal},         {"ours_s", c.ours_s},     {"theirs_s", c.theirs_s},
          {"ratio", c.ratio},       {"ratio_low", c.ratio_low}, {"ratio_high", c.ratio_high},
          {"extra", c.extra},       {"error", c.error}};
}

}  // namespace

int main(int argc, char** argv) {
  // OpenBLAS's idle threads spin for a while after each call; with two cores
  // they would steal time from whichever side runs next: one OpenBLAS thread
  // unless the user chose (torch's intra-op threads are unaffected).
  bnlab::apps::fix_blas_environment(argv, /*single_thread=*/true);
  // As in bnlab-train (whose step the Python comparison measures); the C++
  // sides of every comparison share it, the Python child keeps glibc's defaults.
  bnlab::apps::keep_freed_memory_for_reuse();
  bnlab::apps::log_to_stderr();
  spdlog::set_level(spdlog::level::err);  // the recorder's alerts about this synthetic training are noise here
  benchmark::Initialize(&argc, argv);  // takes the --benchmark_* flags

  bb::BenchConfig config;
  config.python = BNLAB_BENCH_PYTHON;
  config.python_script = BNLAB_BENCH_PYTHON_SCRIPT;
  std::string summary_json;
  bool keep = false;
  CLI::App app{"bnlab-bench: bnlab's BatchNorm kernels, BatchNormAct and training step against LibTorch's native "
               "ops and eager PyTorch, measured side by side in interleaved rounds; prints each as a ratio. "
               "Google Benchmark's --benchmark_filter=<regex> selects comparisons, --benchmark_list_tests lists them."};
  app.add_flag("--quick", config.quick, "short mode for CI: smaller shapes, 3 rounds (checks that it runs, not speed)");
  app.add_option("--rounds", config.interleave.rounds, "interleaved rounds per comparison")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--min-round-s", config.interleave.min_round_s, "shortest round of the first side, in seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--threads", config.threads, "torch intra-op threads on both sides (0: torch's default)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--python", config.python, "Python with torch, for the eager-PyTorch comparison")->capture_default_str();
  app.add_option("--python-script", config.python_script, "the Python side of that comparison")->capture_default_str();
  app.add_option("--summary-json", summary_json, "also write the results as JSON here");
  app.add_flag("--keep", keep, "keep the recorder's output folder");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // The compiled-in path points into the source tree; an installed bnlab-bench
  // finds the script next to itself, in <prefix>/share/bnlab.
  if (!std::filesystem::exists(config.python_script)) {
    std::error_code error;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", error);
    const auto installed = self.parent_path().parent_path() / "share" / "bnlab" / "python_step.py";
    if (!error && std::filesystem::exists(installed)) config.python_script = installed.string();
  }
  if (config.quick) {
    config.interleave.rounds = std::min(config.interleave.rounds, 3);
    config.interleave.warmup = 1;
    config.interleave.min_round_s = 0.005;
  }
  if (config.threads > 0) torch::set_num_threads(config.threads);
  const auto work = std::filesystem::temp_directory_path() / ("bnlab-bench." + std::to_string(::getpid()));
  config.work_dir = work.string();

  const std::string machine =
      fmt::format("{}, {} torch threads, OpenBLAS threads {} core {}, LibTorch {}, bnlab {}", cpu_model(),
                  torch::get_num_threads(), env_or("OPENBLAS_NUM_THREADS", "default"),
                  env_or("OPENBLAS_CORETYPE", "detected"), TORCH_VERSION, BNLAB_VERSION_STRING);
  std::vector<bb::Comparison> results;
  std::vector<bb::Case> cases = bb::kernel_cases(config);
  for (auto& c : bb::training_cases(config)) cases.push_back(std::move(c));
  for (const auto& c : cases) {
    benchmark::RegisterBenchmark(c.name.c_str(), [c, &results](benchmark::State& state) {
      for (auto _ : state) {
        bb::Comparison r = c.run();
        results.push_back(r);
        if (!r.error.empty()) {
          state.SkipWithError(r.error.c_str());
          break;
        }
        state.SetIterationTime(r.ours_s);
        state.counters["ours_us"] = r.ours_s * 1e6;
        state.counters["theirs_us"] = r.theirs_s * 1e6;
        state.counters["ratio"] = r.ratio;
        if (r.goal > 0) state.counters["goal"] = r.goal;
      }
    })->Iterations(1)->UseManualTime()->Unit(benchmark::kMicrosecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  print_summary(results, machine);
  if (!summary_json.empty()) {
    nlohmann::json j{{"machine", machine}, {"quick", config.quick}, {"rounds", config.interleave.rounds},
                     {"comparisons", nlohmann::json::array()}};
    for (const auto& r : results) j["comparisons"].push_back(to_json(r));
    bnlab::io::write_file_atomically(summary_json, j.dump(2) + "\n");
  }
  if (!keep) {
    std::error_code ignored;
    std::filesystem::remove_all(work, ignored);
  }
  for (const auto& r : results) {
    if (!r.error.empty()) return 1;  // a comparison that could not run; slow ones never fail
  }
  return 0;
}
