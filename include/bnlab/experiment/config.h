// Configuration of bnlab-train's runs, studies and probes: one struct each,
// readable from JSON (the --config file) and written next to every run.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace bnlab::experiment {

/// A configuration value that is not acceptable; the message names the key,
/// what was expected and what came. bnlab-train exits with code 2 on it.
class ConfigError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// One training run. Field names are the JSON keys and the CLI flags
/// (`--batch-size` ⇔ "batch_size").
struct RunConfig {
  // data
  std::string dataset = "synthetic";  ///< synthetic | names | mnist
  std::string data_path;              ///< names: the word file; mnist: the IDX folder
  int64_t context = 3;                ///< names: characters of context
  int64_t train_limit = 0;            ///< mnist: at most this many training images (0: all)
  int64_t features = 32;              ///< synthetic: input dimension
  int64_t classes = 10;               ///< synthetic: number of classes
  int64_t train_size = 8192;          ///< synthetic
  int64_t val_size = 2048;            ///< synthetic
  uint64_t data_seed = 1234;          ///< synthetic teacher and inputs; names split
  // model
  int64_t depth = 6;
  int64_t width = 128;
  std::string activation = "tanh";
  std::string batch_norm = "before";  ///< none | before | after
  bool fuse_batch_norm = false;       ///< before: one BatchNormAct per block
  std::string init = "default";       ///< default | kaiming | naive | gain
  double gain = 1.0;                  ///< for init "gain"
  double negative_slope = 0.01;
  double alpha = 1.0;
  int64_t pieces = 2;
  std::string approximate = "none";
  double saturation_threshold = 0.97;
  int64_t embedding_dim = 10;
  // optimization
  std::string optimizer = "sgd";      ///< sgd | adam | adamw
  double lr = 0.05;
  double momentum = 0.9;              ///< sgd
  double weight_decay = 0.0;
  std::string schedule = "constant";  ///< constant | step | cosine
  int64_t lr_step_size = 1000;
  double lr_gamma = 0.1;
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t batch_size = 128;
  int64_t steps = 1500;               ///< 0: use epochs
  int64_t epochs = 0;
  int64_t eval_every = 250;
  // bookkeeping
  uint64_t seed = 0;                  ///< model init and batch order
  int64_t threads = 0;                ///< torch intra-op threads (0: torch's default)
  std::string out = "runs/train";
  std::vector<std::string> sinks{"csv", "jsonl", "tensorboard"};
  int64_t histogram_every = 100;
  int64_t percentile_sample = 1024;   ///< see train::RecorderOptions::percentile_sample
  int64_t log_every = 100;
  int64_t checkpoint_every = 0;       ///< 0: only when stopped
  bool resume = false;                ///< continue from <out>/checkpoint.pt
  double target_loss = 1.0;           ///< for "steps to target" (smoothed training loss)
  /// Data-parallel runs: seconds a rank waits for the others (to join, and in
  /// each collective) before failing with an error.
  double dist_timeout = 60.0;
};

/// The activation × BatchNorm grid of `bnlab-train study`.
struct StudyConfig {
  RunConfig base;  ///< every run's settings but the activation and BatchNorm
  std::vector<std::string> activations{"tanh", "sigmoid", "relu", "leaky_relu", "elu", "gelu", "maxout"};
  std::vector<std::string> batch_norms{"none", "before"};
};

/// `bnlab-train probe`: tanh over a random unit-variance weight matrix.
struct ProbeConfig {
  int64_t inputs = 16;
  int64_t width = 500;
  uint64_t seed = 0;
  int64_t bins = 60;
  std::string out = "runs/probe";
};

/// Calls f(key, field, help) for every field of a RunConfig: the one list
/// behind the JSON keys, bnlab-train's flags (key with '-' for '_') and --help.
template <typename Config, typename F>
void visit_fields(Config& c, F&& f) {
  f("dataset", c.dataset, "synthetic (built in), names (a word file) or mnist (an IDX folder)");
  f("data_path", c.data_path, "names: the file of words, one per line; mnist: the folder of IDX files (.gz allowed)");
  f("context", c.context, "names: characters of context before the predicted one");
  f("train_limit", c.train_limit, "mnist: use at most this many training images (0: all)");
  f("features", c.features, "synthetic: input dimension");
  f("classes", c.classes, "synthetic: number of classes");
  f("train_size", c.train_size, "synthetic: training examples");
  f("val_size", c.val_size, "synthetic: validation examples");
  f("data_seed", c.data_seed, "seed of the synthetic data (teacher and inputs) and of the names split");
  f("depth", c.depth, "hidden blocks of the MLP");
  f("width", c.width, "width of each hidden block");
  f("activation", c.activation, "tanh, sigmoid, softsign, hardtanh, relu, leaky_relu, elu, gelu, silu or maxout");
  f("batch_norm", c.batch_norm, "BatchNorm in each block: none, before (the activation) or after");
  f("fuse_batch_norm", c.fuse_batch_norm,
    "with batch_norm before: fuse BatchNorm and the activation into one bnlab::nn::BatchNormAct per block (the same "
    "network, one pass over the data each way; not data-parallel)");
  f("init", c.init, "hidden weights: default (PyTorch's), kaiming (gain from the activation, 5/3 for tanh), "
                    "naive (N(0,1): the bad scale) or gain (see --gain)");
  f("gain", c.gain, "with --init gain: weights ~ N(0, gain^2/fan_in)");
  f("negative_slope", c.negative_slope, "leaky_relu's slope for x < 0");
  f("alpha", c.alpha, "elu's alpha");
  f("pieces", c.pieces, "maxout's pieces per unit");
  f("approximate", c.approximate, "gelu: none (exact) or tanh");
  f("saturation_threshold", c.saturation_threshold, "threshold t of the saturation rules (|tanh| > t, ...)");
  f("embedding_dim", c.embedding_dim, "names: embedding size per character");
  f("optimizer", c.optimizer, "sgd (with momentum), adam or adamw");
  f("lr", c.lr, "learning rate");
  f("momentum", c.momentum, "sgd momentum");
  f("weight_decay", c.weight_decay, "weight decay");
  f("schedule", c.schedule, "learning-rate schedule: constant, step or cosine");
  f("lr_step_size", c.lr_step_size, "step schedule: decay every N steps");
  f("lr_gamma", c.lr_gamma, "step schedule: decay factor");
  f("min_lr", c.min_lr, "cosine schedule: final learning rate");
  f("warmup_steps", c.warmup_steps, "linear warm-up steps");
  f("batch_size", c.batch_size, "examples per step");
  f("steps", c.steps, "optimizer steps (0: use --epochs)");
  f("epochs", c.epochs, "passes over the training data when --steps is 0");
  f("eval_every", c.eval_every, "validate every N steps and after the last (0: never)");
  f("seed", c.seed, "seed of the model's initialization and the batch order");
  f("threads", c.threads, "torch intra-op threads (0: torch's default)");
  f("out", c.out, "output folder");
  f("sinks", c.sinks, "metrics files, comma separated: csv, jsonl, tensorboard");
  f("histogram_every", c.histogram_every, "histograms of every layer every N steps (0: never)");
  f("percentile_sample", c.percentile_sample,
    "values of each activation's input kept per step for its 15/50/85th percentiles: exact up to this many, "
    "else over a strided sample of this many (0: no percentiles)");
  f("log_every", c.log_every, "progress every N steps (0: quiet)");
  f("checkpoint_every", c.checkpoint_every, "checkpoint every N steps (always on Ctrl-C; 0: only then)");
  f("resume", c.resume, "continue from <out>/checkpoint.pt");
  f("target_loss", c.target_loss, "the loss 'steps to target' measures");
  f("dist_timeout", c.dist_timeout, "data-parallel: seconds a rank waits for the others (to join, in each step) "
                                    "before exiting with an error");
}

/// Same for a ProbeConfig.
template <typename Config, typename F>
void visit_fields_probe(Config& c, F&& f) {
  f("inputs", c.inputs, "random inputs (the batch)");
  f("width", c.width, "input and output dimension of the weight matrix");
  f("seed", c.seed, "seed of the inputs and weights");
  f("bins", c.bins, "histogram bins");
  f("out", c.out, "output folder");
}

/// Validates every field (throws ConfigError naming the field).
void validate(const RunConfig& config);
void validate(const StudyConfig& config);
void validate(const ProbeConfig& config);

/// JSON ⇔ config. from_json starts from `base` and overrides the keys
/// present; an unknown key or a value of the wrong type is a ConfigError.
nlohmann::json to_json(const RunConfig& config);
RunConfig run_config_from_json(const nlohmann::json& j, RunConfig base = {});
nlohmann::json to_json(const StudyConfig& config);
StudyConfig study_config_from_json(const nlohmann::json& j, StudyConfig base = {});
nlohmann::json to_json(const ProbeConfig& config);
ProbeConfig probe_config_from_json(const nlohmann::json& j, ProbeConfig base = {});

/// Reads a JSON file (ConfigError naming the file for missing or malformed ones).
nlohmann::json read_json_file(const std::string& path);

}  // namespace bnlab::experiment
