#include "bnlab/experiment/probe.h"

#include "bnlab/io/atomic_file.h"
#include "bnlab/nn/modules/activation.h"
#include "bnlab/nn/modules/batch_norm.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>

namespace bnlab::experiment {

namespace {

train::Histogram histogram(const torch::Tensor& t, int64_t bins, double lo, double hi) {
  train::Histogram h;
  auto d = t.detach().to(torch::kDouble).reshape(-1);
  h.min = d.min().item<double>();
  h.max = d.max().item<double>();
  h.num = static_cast<double>(d.numel());
  h.sum = d.sum().item<double>();
  h.sum_squares = (d * d).sum().item<double>();
  auto counts = torch::histc(d.clamp(lo, hi), bins, lo, hi).contiguous();
  h.counts.assign(counts.data_ptr<double>(), counts.data_ptr<double>() + bins);
  for (int64_t i = 0; i <= bins; ++i) h.edges.push_back(lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(bins));
  return h;
}

ProbeSide measure(const torch::Tensor& pre, int64_t bins) {
  torch::NoGradGuard no_grad;
  bnlab::nn::Tanh tanh;
  ProbeSide side;
  auto y = tanh->forward(pre);
  side.saturation_pct = 100.0 * tanh->saturated(pre).to(torch::kDouble).mean().item<double>();
  side.preactivation_std = pre.std().item<double>();
  const double span = std::max(1.0, pre.abs().max().item<double>());
  side.preactivations = histogram(pre, bins, -span, span);
  side.outputs = histogram(y, bins, -1.0, 1.0);
  return side;
}

nlohmann::json to_json(const ProbeSide& s) {
  auto h = [](const train::Histogram& x) {
    return nlohmann::json{{"edges", x.edges}, {"counts", x.counts}, {"min", x.min}, {"max", x.max}};
  };
  return {{"saturation_pct", s.saturation_pct},
          {"preactivation_std", s.preactivation_std},
          {"preactivations", h(s.preactivations)},
          {"tanh_outputs", h(s.outputs)}};
}

}  // namespace

ProbeResult run_probe(const ProbeConfig& config) {
  validate(config);
  auto gen = at::detail::createCPUGenerator(config.seed);
  auto x = torch::randn({config.inputs, config.width}, gen);
  auto w = torch::randn({config.width, config.width}, gen);  // unit variance: the bad scale
  auto pre = x.matmul(w);
  ProbeResult r;
  r.without_batch_norm = measure(pre, config.bins);
  bnlab::nn::BatchNorm1d bn(config.width);
  bn->train();
  torch::Tensor normalized;
  {
    torch::NoGradGuard no_grad;
    normalized = bn->forward(pre);
  }
  r.with_batch_norm = measure(normalized, config.bins);

  namespace fs = std::filesystem;
  io::make_directories(config.out);
  const nlohmann::json j{{"config", experiment::to_json(config)},
                         {"without_batch_norm", to_json(r.without_batch_norm)},
                         {"with_batch_norm", to_json(r.with_batch_norm)}};
  io::write_file_atomically((fs::path(config.out) / "probe.json").string(), j.dump(2) + "\n");
  std::string csv = "side,quantity,bin_low,bin_high,count\n";
  auto rows = [&](const char* side, const char* quantity, const train::Histogram& h) {
    for (size_t i = 0; i < h.counts.size(); ++i) {
      csv += fmt::format("{},{},{},{},{}\n", side, quantity, h.edges[i], h.edges[i + 1], h.counts[i]);
    }
  };
  rows("without_batch_norm", "preactivation", r.without_batch_norm.preactivations);
  rows("without_batch_norm", "tanh_output", r.without_batch_norm.outputs);
  rows("with_batch_norm", "preactivation", r.with_batch_norm.preactivations);
  rows("with_batch_norm", "tanh_output", r.with_batch_norm.outputs);
  io::write_file_atomically((fs::path(config.out) / "probe_histograms.csv").string(), csv);
  return r;
}

}  // namespace bnlab::experiment
