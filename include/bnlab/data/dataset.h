// Datasets behind one interface: train/validation splits plus what a model
// needs to know about the inputs.
#pragma once

#include <bnlab/data/synthetic_classification.h>

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace bnlab::data {

/// A classification dataset.
struct Dataset {
  std::string name;
  Split train;
  Split val;
  int64_t num_classes = 0;
  /// Float inputs (N, num_features); 0 when the inputs are token indices.
  int64_t num_features = 0;
  /// Token inputs (N, context) int64 in [0, vocab_size); 0 for float inputs.
  int64_t vocab_size = 0;
  int64_t context = 0;
  /// Token strings for token datasets (index → token).
  std::vector<std::string> vocabulary;
};

/// The built-in synthetic task (see SyntheticClassification).
Dataset synthetic_dataset(const SyntheticClassificationOptions& options = {});

struct NamesOptions {
  /// Characters of context before the predicted one (makemore's block_size).
  TORCH_ARG(int64_t, context) = 3;
  /// Fraction of the words held out for validation.
  TORCH_ARG(double, val_fraction) = 0.1;
  /// Seed of the train/validation split of the words.
  TORCH_ARG(uint64_t, seed) = 42;
};

/// Character-level next-character prediction from a text file of one word per
/// line (makemore): the vocabulary is the file's characters plus '.', the
/// boundary token (index 0); each word w gives len(w) + 1 examples
/// (`context` previous characters → the next, '.' padded and terminated).
/// Blank lines are skipped. Throws naming the file and line on bad input
/// (missing file, no words, a '.' inside a word).
Dataset names_dataset(const std::string& path, const NamesOptions& options = {});

struct MnistOptions {
  /// Use at most this many training images (0: all).
  TORCH_ARG(int64_t, train_limit) = 0;
  /// Use at most this many test images as validation (0: all).
  TORCH_ARG(int64_t, val_limit) = 0;
};

/// MNIST from a folder with the four IDX files (train-images-idx3-ubyte,
/// train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte),
/// each optionally gzipped (".gz"). Images become (N, 784) float32,
/// normalized with MNIST's mean 0.1307 and std 0.3081; the t10k set is the
/// validation split. Throws naming the file for a wrong magic number,
/// mismatched counts or truncated data.
Dataset mnist_dataset(const std::string& dir, const MnistOptions& options = {});

/// One IDX file (the MNIST container): magic number, big-endian dimensions,
/// unsigned bytes. Exposed for tests.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

/// Reads `path` (gzipped when it ends in .gz) expecting `expected_dims`
/// dimensions of unsigned bytes (IDX type 0x08).
IdxArray read_idx(const std::string& path, int expected_dims);

}  // namespace bnlab::data
