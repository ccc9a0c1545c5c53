#include "bnlab/experiment/config.h"

#include "bnlab/io/atomic_file.h"
#include "bnlab/models/mlp.h"
#include "bnlab/nn/make_activation.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <set>

namespace bnlab::experiment {

namespace {

// The visitors without the help text.
template <typename Config, typename F>
void visit_run(Config& c, F&& f) {
  visit_fields(c, [&](const char* key, auto& field, const char*) { f(key, field); });
}

template <typename Config, typename F>
void visit_probe(Config& c, F&& f) {
  visit_fields_probe(c, [&](const char* key, auto& field, const char*) { f(key, field); });
}

std::string type_name(const nlohmann::json& v) { return v.type_name(); }

template <typename T>
void assign(T& field, const nlohmann::json& value, const std::string& key) {
  try {
    if constexpr (std::is_same_v<T, bool>) {
      if (!value.is_boolean()) throw std::invalid_argument("a boolean");
    } else if constexpr (std::is_integral_v<T>) {
      if (!value.is_number_integer()) throw std::invalid_argument("an integer");
      if constexpr (std::is_unsigned_v<T>) {
        if (value.get<int64_t>() < 0) throw std::invalid_argument("a non-negative integer");
      }
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!value.is_number()) throw std::invalid_argument("a number");
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!value.is_string()) throw std::invalid_argument("a string");
    } else {
      if (!value.is_array()) throw std::invalid_argument("an array of strings");
    }
    field = value.get<T>();
  } catch (const std::invalid_argument& expected) {
    throw ConfigError("config key \"" + key + "\": expected " + expected.what() + ", got " + type_name(value) + " " +
                      value.dump());
  } catch (const nlohmann::json::exception&) {
    throw ConfigError("config key \"" + key + "\": expected a value of its type, got " + value.dump());
  }
}

template <typename Visit, typename Config>
void read_keys(const nlohmann::json& j, Config& c, Visit visit, const std::set<std::string>& ignored = {}) {
  if (!j.is_object()) throw ConfigError("config: expected a JSON object, got " + type_name(j));
  std::vector<std::string> known;
  visit(c, [&](const char* key, auto&) { known.emplace_back(key); });
  for (const auto& [key, value] : j.items()) {
    if (ignored.count(key) != 0U) continue;
    bool found = false;
    visit(c, [&](const char* name, auto& field) {
      if (key == name) {
        assign(field, value, key);
        found = true;
      }
    });
    if (!found) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      throw ConfigError("config: unknown key \"" + key + "\"; valid keys: " + list);
    }
  }
}

void check(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}

template <typename T>
void check_positive(T value, const char* key) {
  check(value > 0, std::string(key) + ": expected a positive value, got " + std::to_string(value));
}

template <typename T>
void check_non_negative(T value, const char* key) {
  check(value >= 0, std::string(key) + ": expected a value >= 0, got " + std::to_string(value));
}

void check_one_of(const std::string& value, const std::vector<std::string>& valid, const char* key) {
  if (std::find(valid.begin(), valid.end(), value) != valid.end()) return;
  std::string list;
  for (const auto& v : valid) list += (list.empty() ? "" : ", ") + v;
  throw ConfigError(std::string(key) + ": expected one of " + list + ", got \"" + value + "\"");
}

}  // namespace

void validate(const RunConfig& c) {
  check_one_of(c.dataset, {"synthetic", "names", "mnist"}, "dataset");
  check(c.dataset == "synthetic" || !c.data_path.empty(),
        "data_path: the " + c.dataset + " dataset needs a path (--data-path)");
  if (c.dataset == "names" && !c.data_path.empty()) {
    check(std::filesystem::is_regular_file(c.data_path),
          "data_path: the names dataset expects a file of words, one per line; " + c.data_path + " is not a file");
  }
  if (c.dataset == "mnist" && !c.data_path.empty()) {
    check(std::filesystem::is_directory(c.data_path),
          "data_path: the mnist dataset expects a folder of IDX files; " + c.data_path + " is not a folder");
  }
  check_positive(c.context, "context");
  check_non_negative(c.train_limit, "train_limit");
  check_positive(c.features, "features");
  check(c.classes >= 2, "classes: expected at least 2, got " + std::to_string(c.classes));
  check_positive(c.train_size, "train_size");
  check_non_negative(c.val_size, "val_size");
  check_non_negative(c.depth, "depth");
  check_positive(c.width, "width");
  check_one_of(c.activation, nn::activation_names(), "activation");
  check_one_of(c.batch_norm, {"none", "before", "after"}, "batch_norm");
  check(!c.fuse_batch_norm || c.batch_norm == "before",
        "fuse_batch_norm: expected batch_norm before (the activation), got " + c.batch_norm);
  check_one_of(c.init, {"default", "kaiming", "naive", "gain"}, "init");
  check_positive(c.gain, "gain");
  check_positive(c.alpha, "alpha");
  check_positive(c.pieces, "pieces");
  check_one_of(c.approximate, {"none", "tanh"}, "approximate");
  check(c.saturation_threshold > 0 && c.saturation_threshold < 1,
        "saturation_threshold: expected a value in (0, 1), got " + std::to_string(c.saturation_threshold));
  check_positive(c.embedding_dim, "embedding_dim");
  check_one_of(c.optimizer, {"sgd", "adam", "adamw"}, "optimizer");
  check_positive(c.lr, "lr");
  check(c.momentum >= 0 && c.momentum < 1, "momentum: expected a value in [0, 1), got " + std::to_string(c.momentum));
  check_non_negative(c.weight_decay, "weight_decay");
  check_one_of(c.schedule, {"constant", "step", "cosine"}, "schedule");
  check_positive(c.lr_step_size, "lr_step_size");
  check_positive(c.lr_gamma, "lr_gamma");
  check_non_negative(c.min_lr, "min_lr");
  check_non_negative(c.warmup_steps, "warmup_steps");
  check_positive(c.batch_size, "batch_size");
  check_non_negative(c.steps, "steps");
  check_non_negative(c.epochs, "epochs");
  check(c.steps > 0 || c.epochs > 0, "steps: expected steps > 0 or epochs > 0, got steps=0 and epochs=0");
  check_non_negative(c.eval_every, "eval_every");
  check_non_negative(c.threads, "threads");
  check(!c.out.empty(), "out: expected an output folder, got an empty path");
  for (const auto& s : c.sinks) check_one_of(s, {"csv", "jsonl", "tensorboard"}, "sinks");
  check_non_negative(c.histogram_every, "histogram_every");
  check_non_negative(c.percentile_sample, "percentile_sample");
  check_non_negative(c.log_every, "log_every");
  check_non_negative(c.checkpoint_every, "checkpoint_every");
  check_positive(c.target_loss, "target_loss");
  check_positive(c.dist_timeout, "dist_timeout");
}

void validate(const StudyConfig& c) {
  validate(c.base);
  check(!c.activations.empty(), "activations: expected at least one activation");
  for (const auto& a : c.activations) check_one_of(a, nn::activation_names(), "activations");
  check(!c.batch_norms.empty(), "batch_norms: expected at least one of none, before, after");
  for (const auto& b : c.batch_norms) check_one_of(b, {"none", "before", "after"}, "batch_norms");
}

void validate(const ProbeConfig& c) {
  check_positive(c.inputs, "inputs");
  check(c.inputs >= 2, "inputs: BatchNorm needs at least 2 inputs, got " + std::to_string(c.inputs));
  check_positive(c.width, "width");
  check_positive(c.bins, "bins");
  check(!c.out.empty(), "out: expected an output folder, got an empty path");
}

nlohmann::json to_json(const RunConfig& config) {
  nlohmann::json j = nlohmann::json::object();
  visit_run(const_cast<RunConfig&>(config), [&](const char* key, const auto& field) { j[key] = field; });
  return j;
}

RunConfig run_config_from_json(const nlohmann::json& j, RunConfig base) {
  read_keys(j, base, [](auto& c, auto&& f) { visit_run(c, f); });
  return base;
}

nlohmann::json to_json(const StudyConfig& config) {
  nlohmann::json j = to_json(config.base);
  j["activations"] = config.activations;
  j["batch_norms"] = config.batch_norms;
  return j;
}

StudyConfig study_config_from_json(const nlohmann::json& j, StudyConfig base) {
  base.base = [&] {
    RunConfig run = base.base;
    read_keys(j, run, [](auto& c, auto&& f) { visit_run(c, f); }, {"activations", "batch_norms"});
    return run;
  }();
  if (j.contains("activations")) assign(base.activations, j["activations"], "activations");
  if (j.contains("batch_norms")) assign(base.batch_norms, j["batch_norms"], "batch_norms");
  return base;
}

nlohmann::json to_json(const ProbeConfig& config) {
  nlohmann::json j = nlohmann::json::object();
  visit_probe(const_cast<ProbeConfig&>(config), [&](const char* key, const auto& field) { j[key] = field; });
  return j;
}

ProbeConfig probe_config_from_json(const nlohmann::json& j, ProbeConfig base) {
  read_keys(j, base, [](auto& c, auto&& f) { visit_probe(c, f); });
  return base;
}

nlohmann::json read_json_file(const std::string& path) {
  std::string text;
  try {
    text = io::read_file(path);
  } catch (const std::exception& e) {
    throw ConfigError(std::string("config file: ") + e.what());
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw ConfigError("config file " + path + ": malformed JSON: " + e.what());
  }
}

}  // namespace bnlab::experiment
