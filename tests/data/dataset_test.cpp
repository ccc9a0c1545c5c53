// Datasets from files the tests write: a word list and small MNIST IDX files.
#include "bnlab/data/dataset.h"

#include "errors.h"

#include "scratch_dir.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace {

namespace fs = std::filesystem;
using bnlab_test::error_of;

fs::path temp_dir(const std::string& name) {
  return bnlab_test::scratch_dir("dataset_" + name);
}

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const fs::path& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string idx_images(int n, int rows, int cols, uint8_t base) {
  std::string s = be32(0x803) + be32(n) + be32(rows) + be32(cols);
  for (int i = 0; i < n * rows * cols; ++i) s.push_back(static_cast<char>(static_cast<uint8_t>(base + i)));
  return s;
}

std::string idx_labels(const std::vector<uint8_t>& labels) {
  std::string s = be32(0x801) + be32(static_cast<uint32_t>(labels.size()));
  for (auto l : labels) s.push_back(static_cast<char>(l));
  return s;
}

TEST(NamesDataset, MakemoreExamplesFromAWordFile) {
  const auto dir = temp_dir("names");
  write(dir / "names.txt", "emma\nava\n\nbo\n");
  auto d = bnlab::data::names_dataset((dir / "names.txt").string(),
                                      bnlab::data::NamesOptions().context(3).val_fraction(0.0));
  // Vocabulary: '.' then the sorted characters.
  EXPECT_EQ(d.vocabulary, (std::vector<std::string>{".", "a", "b", "e", "m", "o", "v"}));
  EXPECT_EQ(d.vocab_size, 7);
  EXPECT_EQ(d.num_classes, 7);
  // len(w) + 1 examples per word: 5 + 4 + 3.
  ASSERT_EQ(d.train.targets.size(0), 12);
  EXPECT_EQ(d.train.inputs.sizes(), (std::vector<int64_t>{12, 3}));
  // Find "emma": contexts ... → e, ..e → m, .em → m, emm → a, mma → .
  auto index = [&](char c) {
    for (size_t i = 0; i < d.vocabulary.size(); ++i) {
      if (d.vocabulary[i] == std::string(1, c)) return static_cast<int64_t>(i);
    }
    return int64_t{-1};
  };
  bool found = false;
  for (int64_t i = 0; i + 4 < 12; ++i) {
    if (d.train.targets[i].item<int64_t>() == index('e') && d.train.targets[i + 1].item<int64_t>() == index('m') &&
        d.train.targets[i + 3].item<int64_t>() == index('a')) {
      found = true;
      EXPECT_TRUE(torch::equal(d.train.inputs[i], torch::tensor({0, 0, 0}, torch::kLong)));
      EXPECT_TRUE(torch::equal(d.train.inputs[i + 4], torch::tensor({index('m'), index('m'), index('a')}, torch::kLong)));
      EXPECT_EQ(d.train.targets[i + 4].item<int64_t>(), 0) << "'.' ends the word";
    }
  }
  EXPECT_TRUE(found);
}

TEST(NamesDataset, SplitsWordsReproducibly) {
  const auto dir = temp_dir("names_split");
  std::string words;
  for (int i = 0; i < 50; ++i) words += std::string(1, static_cast<char>('a' + i % 26)) + "xy\n";
  write(dir / "w.txt", words);
  auto a = bnlab::data::names_dataset((dir / "w.txt").string(), bnlab::data::NamesOptions().val_fraction(0.2));
  auto b = bnlab::data::names_dataset((dir / "w.txt").string(), bnlab::data::NamesOptions().val_fraction(0.2));
  EXPECT_EQ(a.val.targets.size(0), 10 * 4);
  EXPECT_TRUE(torch::equal(a.train.inputs, b.train.inputs));
}

TEST(NamesDataset, BadInputIsAClearError) {
  const auto dir = temp_dir("names_bad");
  EXPECT_THAT(error_of([&] { bnlab::data::names_dataset((dir / "missing.txt").string()); }),
              ::testing::HasSubstr("missing.txt"));
  write(dir / "empty.txt", "\n\n");
  EXPECT_THAT(error_of([&] { bnlab::data::names_dataset((dir / "empty.txt").string()); }),
              ::testing::HasSubstr("no words"));
  write(dir / "dot.txt", "ann\nmr.x\n");
  EXPECT_THAT(error_of([&] { bnlab::data::names_dataset((dir / "dot.txt").string()); }),
              ::testing::HasSubstr("dot.txt:2: the word \"mr.x\" contains '.'"));
}

TEST(MnistDataset, ReadsPlainAndGzippedIdxFiles) {
  const auto dir = temp_dir("mnist");
  write_gz(dir / "train-images-idx3-ubyte.gz", idx_images(3, 2, 2, 10));
  write(dir / "train-labels-idx1-ubyte", idx_labels({1, 7, 3}));
  write(dir / "t10k-images-idx3-ubyte", idx_images(2, 2, 2, 200));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", idx_labels({0, 9}));
  auto d = bnlab::data::mnist_dataset(dir.string());
  EXPECT_EQ(d.train.inputs.sizes(), (std::vector<int64_t>{3, 4}));
  EXPECT_TRUE(torch::equal(d.train.targets, torch::tensor({1, 7, 3}, torch::kLong)));
  EXPECT_TRUE(torch::equal(d.val.targets, torch::tensor({0, 9}, torch::kLong)));
  // Pixel 10 of image 0, normalized with MNIST's mean and std.
  EXPECT_NEAR(d.train.inputs[0][0].item<float>(), (10 / 255.0 - 0.1307) / 0.3081, 1e-5);
  EXPECT_NEAR(d.val.inputs[1][3].item<float>(), (207 / 255.0 - 0.1307) / 0.3081, 1e-5);
  EXPECT_EQ(d.num_features, 4);
}

TEST(MnistDataset, TruncatedFileWrongMagicAndMismatchedCountsAreClearErrors) {
  const auto dir = temp_dir("mnist_bad");
  write(dir / "train-images-idx3-ubyte", idx_images(3, 2, 2, 0).substr(0, 20));
  write(dir / "train-labels-idx1-ubyte", idx_labels({1, 2, 3}));
  write(dir / "t10k-images-idx3-ubyte", idx_images(1, 2, 2, 0));
  write(dir / "t10k-labels-idx1-ubyte", idx_labels({1}));
  EXPECT_THAT(error_of([&] { bnlab::data::mnist_dataset(dir.string()); }),
              ::testing::HasSubstr("train-images-idx3-ubyte: truncated: expected 12 bytes of data, got 4"));
  write(dir / "train-images-idx3-ubyte", idx_labels({1, 2, 3}));  // a label file where images belong
  EXPECT_THAT(error_of([&] { bnlab::data::mnist_dataset(dir.string()); }),
              ::testing::HasSubstr("wrong magic number 0x801, expected 0x803"));
  write(dir / "train-images-idx3-ubyte", idx_images(2, 2, 2, 0));
  EXPECT_THAT(error_of([&] { bnlab::data::mnist_dataset(dir.string()); }),
              ::testing::HasSubstr("has 2 images but"));
  fs::remove(dir / "t10k-labels-idx1-ubyte");
  write(dir / "train-images-idx3-ubyte", idx_images(3, 2, 2, 0));
  EXPECT_THAT(error_of([&] { bnlab::data::mnist_dataset(dir.string()); }),
              ::testing::HasSubstr("neither t10k-labels-idx1-ubyte nor t10k-labels-idx1-ubyte.gz"));
  // A gzip stream cut short (a partial download) must not be read as a shorter file.
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", idx_labels(std::vector<uint8_t>(64, 5)));
  std::string whole;
  {
    std::ifstream in(dir / "t10k-labels-idx1-ubyte.gz", std::ios::binary);
    whole.assign(std::istreambuf_iterator<char>(in), {});
  }
  write(dir / "t10k-labels-idx1-ubyte.gz", whole.substr(0, whole.size() - 6));
  EXPECT_THAT(error_of([&] { bnlab::data::mnist_dataset(dir.string()); }),
              ::testing::HasSubstr("t10k-labels-idx1-ubyte.gz: corrupt gzip data"));
}

}  // namespace
