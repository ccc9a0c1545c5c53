// Every sink round-trips: what is read back equals what was written.
#include "bnlab/train/sink.h"

#include "bnlab/io/atomic_file.h"
#include "train/tensorboard/event.pb.h"
#include "train/tensorboard/tfrecord.h"

#include <gmock/gmock.h>
#include "scratch_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace bt = bnlab::train;

std::string temp_dir(const std::string& name) {
  return bnlab_test::scratch_dir("sink_" + name).string();
}

bt::StepMetrics sample_step(int64_t step) {
  bt::StepMetrics m;
  m.step = step;
  m.loss = 2.5 / (step + 1);
  m.lr = 0.1;
  m.grad_norm = 1.25;
  m.step_time_s = 0.001;
  m.examples_per_s = 32000;
  bt::LayerMetrics a;
  a.name = "net.1";
  a.type = "Tanh";
  a.kind = bt::LayerKind::kActivation;
  a.forward_order = 1;
  a.saturation_pct = 12.5 + step;
  a.dead_pct = 0;
  a.input_std = 3.14159265358979;
  a.grad_output_norm = 1e-7;
  bt::LayerMetrics l;
  l.name = "net.0";
  l.type = "Linear";
  l.kind = bt::LayerKind::kParameters;
  l.forward_order = 0;
  l.weight.norm = 4.0;
  l.weight.update_to_data = 1.5e-3;
  m.layers = {l, a};
  if (step == 0) {
    bt::Histogram h;
    h.layer = "net.1";
    h.quantity = "output";
    h.edges = {-1, 0, 1};
    h.counts = {3, 5};
    h.min = -0.9;
    h.max = 0.99;
    h.num = 8;
    h.sum = 1.5;
    h.sum_squares = 4.0;
    m.histograms = {h};
  }
  return m;
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream s(line);
  std::string f;
  while (std::getline(s, f, ',')) fields.push_back(f);
  if (!line.empty() && line.back() == ',') fields.emplace_back();
  return fields;
}

TEST(CsvSink, OneRowPerStepAndLayerWithTheDocumentedColumns) {
  const auto path = temp_dir("csv") + "/metrics.csv";
  {
    bt::CsvSink sink(path);
    sink.write(sample_step(0));
    sink.write(sample_step(1));
  }
  std::ifstream in(path);
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header, bt::CsvSink::header());
  const auto columns = split(header);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(split(line));
  ASSERT_EQ(rows.size(), 4U);
  auto col = [&](const std::string& name) {
    return static_cast<size_t>(std::find(columns.begin(), columns.end(), name) - columns.begin());
  };
  for (const auto& r : rows) ASSERT_EQ(r.size(), columns.size());
  EXPECT_EQ(rows[1][col("layer")], "net.1");
  EXPECT_EQ(rows[1][col("kind")], "activation");
  EXPECT_DOUBLE_EQ(std::stod(rows[1][col("saturation_pct")]), 12.5);
  EXPECT_DOUBLE_EQ(std::stod(rows[3][col("saturation_pct")]), 13.5);
  EXPECT_NEAR(std::stod(rows[1][col("input_std")]), 3.14159265358979, 1e-8);
  EXPECT_DOUBLE_EQ(std::stod(rows[1][col("grad_output_norm")]), 1e-7);
  EXPECT_EQ(rows[1][col("input_mean")], "") << "NaN is an empty field";
  EXPECT_DOUBLE_EQ(std::stod(rows[0][col("weight_update_to_data")]), 1.5e-3);
  EXPECT_DOUBLE_EQ(std::stod(rows[2][col("loss")]), 1.25);
}

TEST(CsvSink, ResumeKeepsRowsUpToTheStepAndAppends) {
  const auto path = temp_dir("csv_resume") + "/metrics.csv";
  {
    bt::CsvSink sink(path);
    for (int s = 0; s < 5; ++s) sink.write(sample_step(s));
  }
  {
    bt::CsvSink sink(path, bt::FileSinkOptions{2});
    sink.write(sample_step(3));
  }
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  std::vector<int> steps;
  while (std::getline(in, line)) steps.push_back(std::stoi(line.substr(0, line.find(','))));
  EXPECT_EQ(steps, (std::vector<int>{0, 0, 1, 1, 2, 2, 3, 3}));
}

TEST(JsonlSink, OneObjectPerStepRoundTrips) {
  const auto path = temp_dir("jsonl") + "/metrics.jsonl";
  {
    bt::JsonlSink sink(path);
    sink.write(sample_step(0));
    sink.write(sample_step(1));
  }
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_EQ(lines[1]["step"], 1);
  EXPECT_DOUBLE_EQ(lines[0]["loss"].get<double>(), 2.5);
  EXPECT_TRUE(lines[0]["val_loss"].is_null());
  EXPECT_EQ(lines[0]["layers"][1]["layer"], "net.1");
  EXPECT_DOUBLE_EQ(lines[0]["layers"][1]["saturation_pct"].get<double>(), 12.5);
  EXPECT_DOUBLE_EQ(lines[0]["layers"][0]["weight_norm"].get<double>(), 4.0);
  EXPECT_EQ(lines[0]["histograms"][0]["counts"], nlohmann::json({3.0, 5.0}));
  EXPECT_FALSE(lines[1].contains("histograms"));
}

TEST(JsonlSink, ResumeDropsLaterSteps) {
  const auto path = temp_dir("jsonl_resume") + "/metrics.jsonl";
  {
    bt::JsonlSink sink(path);
    for (int s = 0; s < 4; ++s) sink.write(sample_step(s));
  }
  { bt::JsonlSink sink(path, bt::FileSinkOptions{1}); }
  std::ifstream in(path);
  int count = 0;
  for (std::string line; std::getline(in, line);) ++count;
  EXPECT_EQ(count, 2);
}

TEST(TensorBoardSink, EventFileDecodesToTheWrittenScalarsAndHistograms) {
  const auto dir = temp_dir("tb");
  std::string path;
  {
    bt::TensorBoardSink sink(dir);
    path = sink.path();
    sink.write(sample_step(0));
    sink.write(sample_step(1));
  }
  EXPECT_EQ(std::filesystem::path(path).filename().string().rfind("events.out.tfevents.", 0), 0U);
  auto records = bnlab::train::tensorboard::read_records(bnlab::io::read_file(path));
  ASSERT_EQ(records.size(), 3U);
  bnlab::tbproto::Event version;
  ASSERT_TRUE(version.ParseFromString(records[0]));
  EXPECT_EQ(version.file_version(), "brain.Event:2");
  bnlab::tbproto::Event e0;
  ASSERT_TRUE(e0.ParseFromString(records[1]));
  EXPECT_EQ(e0.step(), 0);
  std::map<std::string, float> scalars;
  const bnlab::tbproto::HistogramProto* histo = nullptr;
  for (const auto& v : e0.summary().value()) {
    if (v.has_histo()) {
      histo = &v.histo();
      EXPECT_EQ(v.tag(), "net.1/output");
    } else {
      scalars[v.tag()] = v.simple_value();
    }
  }
  EXPECT_FLOAT_EQ(scalars.at("train/loss"), 2.5f);
  EXPECT_FLOAT_EQ(scalars.at("net.1/saturation_pct"), 12.5f);
  EXPECT_FLOAT_EQ(scalars.at("net.0/weight_update_to_data"), 1.5e-3f);
  EXPECT_EQ(scalars.count("net.1/input_mean"), 0U) << "NaN metrics are not written";
  ASSERT_NE(histo, nullptr);
  EXPECT_EQ(histo->bucket_size(), 2);
  EXPECT_DOUBLE_EQ(histo->bucket(1), 5.0);
  EXPECT_DOUBLE_EQ(histo->bucket_limit(0), 0.0);
  EXPECT_DOUBLE_EQ(histo->bucket_limit(1), 1.0);
  EXPECT_DOUBLE_EQ(histo->num(), 8.0);
}

TEST(TensorBoardSink, ResumeWritesASessionStart) {
  const auto dir = temp_dir("tb_resume");
  std::string path;
  {
    bt::TensorBoardSink sink(dir, bt::FileSinkOptions{9});
    path = sink.path();
  }
  auto records = bnlab::train::tensorboard::read_records(bnlab::io::read_file(path));
  ASSERT_EQ(records.size(), 2U);
  bnlab::tbproto::Event start;
  ASSERT_TRUE(start.ParseFromString(records[1]));
  EXPECT_EQ(start.session_log().status(), bnlab::tbproto::SessionLog::START);
  EXPECT_EQ(start.step(), 10);
}

TEST(FileSinks, UnwritablePathIsAClearError) {
  try {
    bt::CsvSink sink("/proc/bnlab/metrics.csv");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("/proc/bnlab"));
  }
}

}  // namespace
