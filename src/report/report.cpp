#include "bnlab/report/report.h"

#include "bnlab/io/atomic_file.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

namespace bnlab::report {

namespace detail {
extern const char* const kReportTemplate;  // src/report/report_template.html, embedded by CMake
}

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxPoints = 300;
constexpr const char* kPlaceholder = "/*BNLAB_DATA*/null";

// Five significant digits keep the page small; non-numbers become null.
nlohmann::json compact(const nlohmann::json& v) {
  if (!v.is_number()) return nullptr;
  const double d = v.get<double>();
  if (!std::isfinite(d)) return nullptr;
  return std::stod(fmt::format("{:.5g}", d));
}

const std::vector<std::string>& series_for(const std::string& kind) {
  static const std::vector<std::string> activation{"saturation_pct", "dead_pct", "grad_output_norm", "input_p15",
                                                   "input_p50", "input_p85", "grad_pass_through"};
  static const std::vector<std::string> batchnorm{"grad_output_norm", "bn_mean_drift", "bn_var_drift",
                                                  "weight_update_to_data"};
  static const std::vector<std::string> parameters{"weight_update_to_data", "weight_grad_norm"};
  if (kind == "activation") return activation;
  if (kind == "batchnorm") return batchnorm;
  return parameters;
}

nlohmann::json run_data(const fs::path& dir, const std::string& name) {
  const auto metrics = dir / "metrics.jsonl";
  std::ifstream in(metrics);
  if (!in) throw std::runtime_error("bnlab-report: cannot read " + metrics.string());
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    try {
      lines.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("bnlab-report: " + metrics.string() + ": malformed line " +
                               std::to_string(lines.size() + 1) + ": " + e.what());
    }
  }
  nlohmann::json run{{"name", name}, {"config", nlohmann::json::object()}, {"steps", nlohmann::json::array()},
                     {"loss", nlohmann::json::array()}, {"val", nlohmann::json::array()},
                     {"layers", nlohmann::json::array()}, {"histograms", nlohmann::json::array()}};
  if (fs::exists(dir / "config.json")) {
    const auto config = nlohmann::json::parse(io::read_file((dir / "config.json").string()), nullptr, false);
    if (config.is_object()) {
      for (const char* key : {"dataset", "activation", "batch_norm", "depth", "width", "init", "optimizer", "lr",
                              "batch_size", "steps"}) {
        if (config.contains(key)) run["config"][key] = config[key];
      }
    }
  }
  if (lines.empty()) return run;
  const size_t stride = (lines.size() + kMaxPoints - 1) / kMaxPoints;
  // Layers in the order of the first line; one series array per metric.
  std::vector<std::pair<std::string, std::string>> layer_kinds;
  std::map<std::string, nlohmann::json> layers;
  for (const auto& l : lines.front()["layers"]) {
    const auto layer_name = l["layer"].get<std::string>();
    const auto kind = l["kind"].get<std::string>();
    layer_kinds.emplace_back(layer_name, kind);
    nlohmann::json entry{{"name", layer_name}, {"type", l["type"]}, {"kind", kind}, {"series", nlohmann::json::object()}};
    for (const auto& metric : series_for(kind)) entry["series"][metric] = nlohmann::json::array();
    layers[layer_name] = entry;
  }
  std::map<std::string, std::pair<int64_t, int64_t>> histogram_steps;  // first/last per layer+quantity
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& line = lines[i];
    if (line.contains("histograms")) {
      for (const auto& h : line["histograms"]) {
        const auto key = h["layer"].get<std::string>() + "/" + h["quantity"].get<std::string>();
        const int64_t step = line["step"].get<int64_t>();
        auto it = histogram_steps.find(key);
        if (it == histogram_steps.end()) {
          histogram_steps[key] = {step, step};
        } else {
          it->second.second = step;
        }
      }
    }
    if (!line["val_loss"].is_null() && line.contains("val_loss")) {
      run["val"].push_back({line["step"], compact(line["val_loss"]), compact(line["val_accuracy"])});
    }
    if (i % stride != 0 && i + 1 != lines.size()) continue;
    run["steps"].push_back(line["step"]);
    run["loss"].push_back(compact(line["loss"]));
    std::map<std::string, const nlohmann::json*> by_name;
    for (const auto& l : line["layers"]) by_name[l["layer"].get<std::string>()] = &l;
    for (const auto& [layer_name, kind] : layer_kinds) {
      auto& series = layers[layer_name]["series"];
      const auto it = by_name.find(layer_name);
      for (const auto& metric : series_for(kind)) {
        series[metric].push_back(it != by_name.end() && it->second->contains(metric) ? compact((*it->second)[metric])
                                                                                      : nlohmann::json());
      }
    }
  }
  for (const auto& [layer_name, kind] : layer_kinds) run["layers"].push_back(layers[layer_name]);
  // The first and the last histogram of each layer and quantity.
  for (const auto& line : lines) {
    if (!line.contains("histograms")) continue;
    const int64_t step = line["step"].get<int64_t>();
    for (const auto& h : line["histograms"]) {
      const auto key = h["layer"].get<std::string>() + "/" + h["quantity"].get<std::string>();
      const auto& [first, last] = histogram_steps[key];
      if (step != first && step != last) continue;
      run["histograms"].push_back({{"layer", h["layer"]}, {"quantity", h["quantity"]}, {"step", step},
                                   {"edges", h["edges"]}, {"counts", h["counts"]}});
    }
  }
  return run;
}

std::string now_string() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

}  // namespace

nlohmann::json report_data(const std::vector<std::string>& dirs, const std::string& title) {
  nlohmann::json data{{"title", title}, {"generated", now_string()}, {"runs", nlohmann::json::array()}, {"study", nullptr}};
  for (const auto& d : dirs) {
    const fs::path dir(d);
    if (fs::exists(dir / "metrics.jsonl")) {
      data["runs"].push_back(run_data(dir, dir.filename().string()));
      continue;
    }
    if (!fs::exists(dir / "summary.json")) {
      throw std::runtime_error("bnlab-report: " + d + " is neither a run folder (no metrics.jsonl) nor a study folder "
                               "(no summary.json)");
    }
    const auto summary = nlohmann::json::parse(io::read_file((dir / "summary.json").string()), nullptr, false);
    if (!summary.is_object() || !summary.contains("runs")) {
      throw std::runtime_error("bnlab-report: " + (dir / "summary.json").string() + " is not a study summary");
    }
    nlohmann::json study{{"columns", {"run", "activation", "batch_norm", "final_train_loss", "final_val_loss",
                                      "final_val_accuracy", "steps_to_target", "saturation_first_pct",
                                      "saturation_last_pct", "dead_pct", "grad_ratio_last_first"}},
                         {"rows", nlohmann::json::array()}};
    for (const auto& r : summary["runs"]) {
      nlohmann::json row = nlohmann::json::array();
      for (const auto& column : study["columns"]) {
        const auto& v = r.contains(column.get<std::string>()) ? r[column.get<std::string>()] : nlohmann::json();
        row.push_back(v.is_number() ? compact(v) : v);
      }
      study["rows"].push_back(row);
      const auto run_dir = dir / r["run"].get<std::string>();
      if (fs::exists(run_dir / "metrics.jsonl")) data["runs"].push_back(run_data(run_dir, r["run"].get<std::string>()));
    }
    if (data["study"].is_null()) {
      data["study"] = study;
    } else {
      for (const auto& row : study["rows"]) data["study"]["rows"].push_back(row);
    }
  }
  return data;
}

std::string render_report(const nlohmann::json& data) {
  std::string page = detail::kReportTemplate;
  const auto at = page.find(kPlaceholder);
  if (at == std::string::npos) throw std::logic_error("bnlab-report: the embedded template lacks its data placeholder");
  // "</" must not appear inside the <script> element.
  std::string json = data.dump();
  for (size_t p = 0; (p = json.find("</", p)) != std::string::npos; p += 3) json.replace(p, 2, "<\\/");
  page.replace(at, std::string(kPlaceholder).size(), json);
  return page;
}

void write_report(const std::vector<std::string>& dirs, const std::string& out_path, const std::string& title) {
  io::write_file_atomically(out_path, render_report(report_data(dirs, title)));
}

}  // namespace bnlab::report
