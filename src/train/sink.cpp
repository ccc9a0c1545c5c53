#include "bnlab/train/sink.h"

namespace bnlab::train {

void MemorySink::write(const StepMetrics& step) {
  std::lock_guard<std::mutex> lock(mutex_);
  steps_.push_back(step);
}

std::vector<StepMetrics> MemorySink::steps() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return steps_;
}

}  // namespace bnlab::train
