// Writes a short recorded run with every sink, plus the metrics as recorded
// (expected.json), for tests/train/check_sink_files.py to decode independently.
#include <bnlab/bnlab.h>
#include <bnlab/train/recorder.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: bnlab_sink_writer OUT_DIR\n";
    return 2;
  }
  const std::string dir = argv[1];
  namespace bt = bnlab::train;
  torch::manual_seed(3);
  torch::nn::Sequential net(torch::nn::Linear(6, 12), bnlab::nn::BatchNorm1d(12), bnlab::nn::Tanh(),
                            torch::nn::Linear(12, 3));
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  auto memory = std::make_shared<bt::MemorySink>();
  bt::Recorder recorder(net, bt::RecorderOptions().histogram_every(2));
  recorder.add_sink(memory);
  recorder.add_sink(std::make_shared<bt::CsvSink>(dir + "/metrics.csv"));
  recorder.add_sink(std::make_shared<bt::JsonlSink>(dir + "/metrics.jsonl"));
  recorder.add_sink(std::make_shared<bt::TensorBoardSink>(dir + "/tb"));
  auto x = torch::randn({64, 6});
  auto y = torch::randint(3, {64});
  for (int step = 0; step < 5; ++step) {
    recorder.begin_step(step);
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    recorder.end_step(loss, 0.05, 64);
  }
  recorder.close();
  auto number = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  nlohmann::json expected = nlohmann::json::array();
  for (const auto& s : memory->steps()) {
    nlohmann::json j{{"step", s.step}};
    for (const auto& c : bt::step_metric_columns()) j[c.name] = number(c.get(s));
    for (const auto& l : s.layers) {
      nlohmann::json lj{{"type", l.type}, {"kind", bt::to_string(l.kind)}};
      for (const auto& c : bt::layer_metric_columns()) lj[c.name] = number(c.get(l));
      j["layers"][l.name] = lj;
    }
    j["histograms"] = nlohmann::json::array();
    for (const auto& h : s.histograms) {
      j["histograms"].push_back({{"tag", h.layer + "/" + h.quantity}, {"counts", h.counts}, {"edges", h.edges}});
    }
    expected.push_back(j);
  }
  std::ofstream(dir + "/expected.json") << expected.dump();
  return 0;
}
