#include "bnlab/optim/update_statistics.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace bnlab::optim {

UpdateStatistics::UpdateStatistics(const std::vector<torch::Tensor>& params)
    : rows_(params.size(), nullptr), written_(params.size(), 0) {
  for (size_t i = 0; i < params.size(); ++i) {
    TORCH_CHECK(params[i].defined(), "bnlab::optim::UpdateStatistics: expected defined parameters, got an undefined one at ",
                i);
    slots_.emplace(params[i].unsafeGetTensorImpl(), i);
    impls_.push_back(params[i].unsafeGetTensorImpl());
  }
}

void UpdateStatistics::set_rows(const std::vector<double*>& rows) {
  TORCH_CHECK(rows.size() == written_.size(), "bnlab::optim::UpdateStatistics::set_rows: expected ", written_.size(),
              " rows (one per watched parameter), got ", rows.size());
  rows_ = rows;  // assigned into the same capacity: no allocation per step
  std::fill(written_.begin(), written_.end(), 0);
}

void UpdateStatistics::clear_rows() { std::fill(rows_.begin(), rows_.end(), nullptr); }

double* UpdateStatistics::claim(const torch::Tensor& param) {
  const c10::TensorImpl* impl = param.unsafeGetTensorImpl();
  size_t slot = next_slot_;
  if (slot >= impls_.size() || impls_[slot] != impl) {
    const auto found = slots_.find(impl);
    if (found == slots_.end()) return nullptr;
    slot = found->second;
  }
  next_slot_ = slot + 1;
  if (rows_[slot] == nullptr) return nullptr;
  written_[slot] = 1;
  return rows_[slot];
}

}  // namespace bnlab::optim
