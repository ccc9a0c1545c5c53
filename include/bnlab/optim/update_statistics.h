// Parameter statistics that bnlab's fused optimizers gather in the pass of
// their update, for bnlab::train::Recorder.
#pragma once

#include <torch/types.h>

#include <c10/core/TensorImpl.h>

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

namespace bnlab::optim {

/// Slots of one parameter's statistics row.
namespace update_stat {
enum Slot : int64_t {
  kSum = 0,         ///< Σθ
  kSumSq,           ///< Σθ²
  kGradSum,         ///< Σg
  kGradSumSq,       ///< Σg²
  kDeltaSum,        ///< ΣΔθ, the change the update made
  kDeltaSumSq,      ///< Σ(Δθ)²
  kNonFiniteParam,  ///< NaN/Inf elements of θ
  kNonFiniteGrad,   ///< NaN/Inf elements of g
  kCount
};
}  // namespace update_stat

/// Which parameters' statistics an optimizer step should report, and where:
/// one row of update_stat::kCount doubles in host memory per watched
/// parameter. The consumer (the recorder) sets the rows before a step and
/// reads which were written after it; the optimizer claims a row for each
/// parameter it updates with a fused kernel and fills it in the same pass,
/// with θ after the update, its gradient, and Δθ = θ_after − θ_before.
class UpdateStatistics {
 public:
  /// Watches `params`: parameter i gets slot i.
  explicit UpdateStatistics(const std::vector<torch::Tensor>& params);

  /// The rows of the coming step, one per slot (nullptr: not wanted); forgets
  /// which rows were written.
  void set_rows(const std::vector<double*>& rows);
  /// No rows: steps report nothing until set_rows().
  void clear_rows();
  /// Whether the step wrote slot i's row since set_rows().
  bool written(size_t slot) const { return written_[slot] != 0; }
  size_t size() const { return written_.size(); }

  /// For the optimizer: the row to fill for `param` and marks it written, or
  /// nullptr when the parameter is not watched or has no row this step.
  double* claim(const torch::Tensor& param);

 private:
  std::unordered_map<const c10::TensorImpl*, size_t> slots_;
  // The watched parameters in slot order, and the slot after the last one
  // claimed: optimizers claim in the order they were given the parameters,
  // which is usually the slot order, so claim() first checks that slot and
  // looks up the map only when the guess is wrong.
  std::vector<const c10::TensorImpl*> impls_;
  size_t next_slot_ = 0;
  std::vector<double*> rows_;
  std::vector<uint8_t> written_;
};

/// Implemented by bnlab's fused optimizers (SGD, Adam, AdamW): while given an
/// UpdateStatistics, each step fills its rows for the parameters the fused
/// CPU kernels update. Parameters that take torch's ops are not reported
/// (their rows stay unwritten), so a consumer measures those itself.
class ReportsUpdateStatistics {
 public:
  virtual ~ReportsUpdateStatistics() = default;
  /// Reports into `statistics` from the next step on; nullptr stops.
  void report_update_statistics(std::shared_ptr<UpdateStatistics> statistics) {
    update_statistics_ = std::move(statistics);
  }

 protected:
  std::shared_ptr<UpdateStatistics> update_statistics_;
};

}  // namespace bnlab::optim
