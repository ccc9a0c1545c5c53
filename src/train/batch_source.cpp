#include "bnlab/train/batch_source.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace bnlab::train {

TensorBatchSource::TensorBatchSource(torch::Tensor inputs, torch::Tensor targets, int64_t batch_size,
                                     uint64_t seed)
    : inputs_(std::move(inputs)),
      targets_(std::move(targets)),
      batch_size_(batch_size),
      generator_(at::detail::createCPUGenerator(seed)) {
  TORCH_CHECK(inputs_.defined() && targets_.defined() && inputs_.dim() >= 1,
              "bnlab::train::TensorBatchSource: expected defined inputs and targets");
  TORCH_CHECK(inputs_.size(0) == targets_.size(0), "bnlab::train::TensorBatchSource: expected as many "
              "targets as inputs, got ", inputs_.size(0), " inputs and ", targets_.size(0), " targets");
  TORCH_CHECK(batch_size_ >= 1 && batch_size_ <= inputs_.size(0),
              "bnlab::train::TensorBatchSource: expected 1 <= batch_size <= ", inputs_.size(0),
              " (the number of examples), got ", batch_size_);
}

void TensorBatchSource::reshuffle() {
  order_ = torch::randperm(inputs_.size(0), generator_, torch::kLong);
  position_ = 0;
  ++epoch_;
}

Batch TensorBatchSource::next() {
  if (epoch_ < 0 || position_ + batch_size_ > inputs_.size(0)) reshuffle();
  auto idx = order_.narrow(0, position_, batch_size_);
  position_ += batch_size_;
  return {inputs_.index_select(0, idx), targets_.index_select(0, idx)};
}

int64_t TensorBatchSource::batches_per_epoch() const { return inputs_.size(0) / batch_size_; }

void TensorBatchSource::save(torch::serialize::OutputArchive& archive) const {
  archive.write("generator", generator_.get_state());
  archive.write("order", order_.defined() ? order_ : torch::empty({0}, torch::kLong));
  archive.write("position", torch::tensor(position_));
  archive.write("epoch", torch::tensor(epoch_));
}

void TensorBatchSource::load(torch::serialize::InputArchive& archive) {
  torch::Tensor state, order, position, epoch;
  archive.read("generator", state);
  archive.read("order", order);
  archive.read("position", position);
  archive.read("epoch", epoch);
  generator_.set_state(state);
  order_ = order.numel() > 0 ? order : torch::Tensor();
  position_ = position.item<int64_t>();
  epoch_ = epoch.item<int64_t>();
  TORCH_CHECK(!order_.defined() || order_.numel() == inputs_.size(0),
              "bnlab::train::TensorBatchSource: the checkpoint's data order covers ", order_.numel(),
              " examples, this dataset has ", inputs_.size(0));
}

FunctionBatchSource::FunctionBatchSource(std::function<Batch(int64_t)> fn, int64_t batches_per_epoch)
    : fn_(std::move(fn)), batches_per_epoch_(batches_per_epoch) {
  TORCH_CHECK(fn_ != nullptr, "bnlab::train::FunctionBatchSource: expected a batch function");
}

Batch FunctionBatchSource::next() { return fn_(step_++); }

void FunctionBatchSource::save(torch::serialize::OutputArchive& archive) const {
  archive.write("step", torch::tensor(step_));
}

void FunctionBatchSource::load(torch::serialize::InputArchive& archive) {
  torch::Tensor step;
  archive.read("step", step);
  step_ = step.item<int64_t>();
}

}  // namespace bnlab::train
