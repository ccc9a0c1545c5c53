// Where the trainer's batches come from.
#pragma once

#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace bnlab::train {

/// Inputs and targets of one batch.
struct Batch {
  torch::Tensor inputs;
  torch::Tensor targets;
};

/// Supplies training batches. A source whose position and randomness are in
/// save()/load() resumes exactly where a checkpoint left it.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// The next batch.
  virtual Batch next() = 0;
  /// Batches per pass over the data (for epoch counting); 0 if unbounded.
  virtual int64_t batches_per_epoch() const = 0;
  virtual void save(torch::serialize::OutputArchive& archive) const = 0;
  virtual void load(torch::serialize::InputArchive& archive) = 0;
};

/// Shuffled minibatches of in-memory tensors (dim 0 indexes examples),
/// reshuffled every epoch by the source's own generator, so the order depends
/// only on the seed. The last partial batch of an epoch is dropped.
class TensorBatchSource : public BatchSource {
 public:
  TensorBatchSource(torch::Tensor inputs, torch::Tensor targets, int64_t batch_size, uint64_t seed);
  Batch next() override;
  int64_t batches_per_epoch() const override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  int64_t epoch() const { return epoch_; }

 private:
  void reshuffle();
  torch::Tensor inputs_;
  torch::Tensor targets_;
  int64_t batch_size_;
  at::Generator generator_;
  torch::Tensor order_;
  int64_t position_ = 0;
  int64_t epoch_ = -1;
};

/// Batches from a function of the step (custom loaders); resumes by step.
class FunctionBatchSource : public BatchSource {
 public:
  explicit FunctionBatchSource(std::function<Batch(int64_t step)> fn, int64_t batches_per_epoch = 0);
  Batch next() override;
  int64_t batches_per_epoch() const override { return batches_per_epoch_; }
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  std::function<Batch(int64_t)> fn_;
  int64_t batches_per_epoch_;
  int64_t step_ = 0;
};

}  // namespace bnlab::train
