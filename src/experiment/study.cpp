#include "bnlab/experiment/study.h"

#include "bnlab/io/atomic_file.h"
#include "bnlab/report/report.h"
#include "bnlab/train/trainer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>

namespace bnlab::experiment {

namespace {

std::string cell(double v, const char* format = "{:.3f}") {
  return std::isfinite(v) ? fmt::format(fmt::runtime(format), v) : std::string("-");
}

std::string csv_number(double v) { return std::isfinite(v) ? fmt::format("{}", v) : ""; }

}  // namespace

StudyConfig default_study_config() {
  StudyConfig c;
  // Weights N(0, 16/fan_in): 2.4x tanh's recommended gain, so tanh and
  // sigmoid start deep in saturation while the unbounded activations still
  // train without BatchNorm (with N(0, 1) they diverge at the first step).
  c.base.init = "gain";
  c.base.gain = 4.0;
  c.base.optimizer = "adam";
  c.base.lr = 0.002;
  c.base.depth = 6;
  c.base.width = 128;
  c.base.train_size = 32768;
  c.base.steps = 1200;
  c.base.eval_every = 200;
  c.base.out = "runs/study";
  c.base.log_every = 400;
  return c;
}

std::string format_study_table(const std::vector<RunSummary>& runs) {
  std::string t = fmt::format("{:<18} {:>10} {:>9} {:>7} {:>13} {:>9} {:>9} {:>7} {:>12} {:>8}\n", "run", "train loss",
                              "val loss", "val acc", "steps→target", "sat first", "sat last", "dead %",
                              "grad last/1st", "time s");
  t += std::string(112, '-') + "\n";
  for (const auto& r : runs) {
    const std::string target = r.steps_to_target >= 0 ? std::to_string(r.steps_to_target) : (r.diverged ? "diverged" : "never");
    t += fmt::format("{:<18} {:>10} {:>9} {:>7} {:>13} {:>9} {:>9} {:>7} {:>12} {:>8}\n", r.name, cell(r.final_train_loss),
                     cell(r.final_val_loss), cell(100 * r.final_val_accuracy, "{:.1f}%"), target,
                     cell(r.saturation_first_pct, "{:.1f}%"), cell(r.saturation_last_pct, "{:.1f}%"),
                     cell(r.dead_pct, "{:.1f}"), cell(r.grad_ratio_last_first, "{:.3g}"), cell(r.seconds, "{:.1f}"));
  }
  return t;
}

StudyResult run_study(const StudyConfig& config) {
  validate(config);
  namespace fs = std::filesystem;
  StudyResult result;
  const fs::path out(config.base.out);
  io::make_directories(config.base.out);
  io::write_file_atomically((out / "study_config.json").string(), to_json(config).dump(2) + "\n");
  const size_t total = config.activations.size() * config.batch_norms.size();
  size_t index = 0;
  for (const auto& activation : config.activations) {
    for (const auto& bn : config.batch_norms) {
      RunConfig run = config.base;
      run.activation = activation;
      run.batch_norm = bn;
      run.resume = false;
      const std::string name = run_name(run);
      run.out = (out / name).string();
      spdlog::info("study run {}/{}: {}", ++index, total, name);
      auto summary = run_training(run, name);
      result.seconds += summary.seconds;
      spdlog::info("  {}: train loss {:.3f}, val loss {:.3f}, saturation first/last {:.1f}%/{:.1f}% ({:.1f} s)", name,
                   summary.final_train_loss, summary.final_val_loss, summary.saturation_first_pct,
                   summary.saturation_last_pct, summary.seconds);
      result.runs.push_back(summary);
      if (summary.interrupted || train::interrupt_requested()) {
        result.interrupted = true;
        break;
      }
    }
    if (result.interrupted) break;
  }
  // The reproducible summary (no timings) and the timings apart.
  nlohmann::json runs = nlohmann::json::array();
  std::string csv = "run,activation,batch_norm,steps,final_train_loss,final_val_loss,final_val_accuracy,"
                    "steps_to_target,saturation_first_pct,saturation_last_pct,dead_pct,grad_ratio_last_first,"
                    "diverged\n";
  std::string timing = "run,seconds\n";
  for (const auto& r : result.runs) {
    runs.push_back(to_json(r));
    csv += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{}\n", r.name, r.activation, r.batch_norm, r.steps,
                       csv_number(r.final_train_loss), csv_number(r.final_val_loss), csv_number(r.final_val_accuracy),
                       r.steps_to_target >= 0 ? std::to_string(r.steps_to_target) : "", csv_number(r.saturation_first_pct),
                       csv_number(r.saturation_last_pct), csv_number(r.dead_pct), csv_number(r.grad_ratio_last_first),
                       r.diverged ? 1 : 0);
    timing += fmt::format("{},{:.3f}\n", r.name, r.seconds);
  }
  io::write_file_atomically((out / "summary.json").string(),
                            nlohmann::json{{"target_loss", config.base.target_loss}, {"runs", runs}}.dump(2) + "\n");
  io::write_file_atomically((out / "summary.csv").string(), csv);
  io::write_file_atomically((out / "timing.csv").string(), timing);
  report::write_report({config.base.out}, (out / "report.html").string(), "bnlab study: activations x BatchNorm");
  return result;
}

}  // namespace bnlab::experiment
