#include "bnlab/experiment/config.h"

#include "errors.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

namespace ex = bnlab::experiment;
using bnlab_test::error_of;

TEST(RunConfig, JsonRoundTripAndOverride) {
  ex::RunConfig c;
  c.width = 64;
  c.sinks = {"csv"};
  auto j = ex::to_json(c);
  EXPECT_EQ(j["width"], 64);
  auto back = ex::run_config_from_json(j);
  EXPECT_EQ(back.width, 64);
  EXPECT_EQ(back.sinks, std::vector<std::string>{"csv"});
  auto partial = ex::run_config_from_json(nlohmann::json{{"depth", 2}, {"lr", 0.5}});
  EXPECT_EQ(partial.depth, 2);
  EXPECT_EQ(partial.lr, 0.5);
  EXPECT_EQ(partial.width, ex::RunConfig().width) << "keys not given keep their defaults";
}

TEST(RunConfig, UnknownKeysAndWrongTypesAreClearErrors) {
  EXPECT_THAT(error_of([] { ex::run_config_from_json(nlohmann::json{{"widht", 3}}); }),
              ::testing::HasSubstr("unknown key \"widht\"; valid keys: dataset, data_path"));
  EXPECT_THAT(error_of([] { ex::run_config_from_json(nlohmann::json{{"width", "wide"}}); }),
              ::testing::HasSubstr("config key \"width\": expected an integer, got string \"wide\""));
  EXPECT_THAT(error_of([] { ex::run_config_from_json(nlohmann::json{{"seed", -1}}); }),
              ::testing::HasSubstr("expected a non-negative integer"));
  EXPECT_THAT(error_of([] { ex::run_config_from_json(nlohmann::json::array()); }),
              ::testing::HasSubstr("expected a JSON object, got array"));
}

TEST(RunConfig, ValidationNamesTheField) {
  auto invalid = [](auto mutate) {
    ex::RunConfig c;
    mutate(c);
    return error_of([&] { ex::validate(c); });
  };
  EXPECT_THAT(invalid([](auto& c) { c.width = 0; }), ::testing::HasSubstr("width: expected a positive value, got 0"));
  EXPECT_THAT(invalid([](auto& c) { c.dataset = "cifar"; }),
              ::testing::HasSubstr("dataset: expected one of synthetic, names, mnist, got \"cifar\""));
  EXPECT_THAT(invalid([](auto& c) { c.dataset = "names"; }), ::testing::HasSubstr("needs a path (--data-path)"));
  EXPECT_THAT(invalid([](auto& c) { c.sinks = {"csv", "parquet"}; }), ::testing::HasSubstr("sinks: expected one of"));
  EXPECT_THAT(invalid([](auto& c) { c.steps = 0; }), ::testing::HasSubstr("steps > 0 or epochs > 0"));
  EXPECT_THAT(invalid([](auto& c) { c.momentum = 1.5; }), ::testing::HasSubstr("momentum: expected a value in [0, 1)"));
  EXPECT_THAT(invalid([](auto& c) { c.percentile_sample = -5; }),
              ::testing::HasSubstr("percentile_sample: expected a value >= 0, got -5"));
  EXPECT_THAT(invalid([](auto& c) {
                c.fuse_batch_norm = true;
                c.batch_norm = "none";
              }),
              ::testing::HasSubstr("fuse_batch_norm: expected batch_norm before (the activation), got none"));
  EXPECT_NO_THROW(ex::validate(ex::RunConfig()));
}

TEST(StudyConfig, ListsAndBaseKeys) {
  auto s = ex::study_config_from_json(nlohmann::json{{"activations", {"tanh", "relu"}}, {"steps", 10}});
  EXPECT_EQ(s.activations, (std::vector<std::string>{"tanh", "relu"}));
  EXPECT_EQ(s.base.steps, 10);
  EXPECT_THAT(error_of([] {
                ex::StudyConfig c;
                c.activations = {"swish"};
                ex::validate(c);
              }),
              ::testing::HasSubstr("activations: expected one of tanh"));
}

TEST(ReadJsonFile, MissingAndMalformedFiles) {
  EXPECT_THAT(error_of([] { ex::read_json_file("/nonexistent/bnlab.json"); }),
              ::testing::HasSubstr("/nonexistent/bnlab.json"));
}

}  // namespace
