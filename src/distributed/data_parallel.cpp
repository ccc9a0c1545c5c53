#include "bnlab/distributed/data_parallel.h"

#include <torch/torch.h>

#include <map>
#include <tuple>

namespace bnlab::distributed {

DataParallel::DataParallel(std::shared_ptr<torch::nn::Module> module, ProcessGroupPtr group,
                           DataParallelOptions options)
    : module_(std::move(module)), group_(std::move(group)), options_(options) {
  TORCH_CHECK(module_ != nullptr, "bnlab::distributed::DataParallel: expected a module, got nullptr");
  TORCH_CHECK(group_, "bnlab::distributed::DataParallel: expected a process group, got none");
  TORCH_CHECK(options_.bucket_bytes() > 0, "bnlab::distributed::DataParallel: expected bucket_bytes > 0, got ",
              options_.bucket_bytes());
}

void DataParallel::broadcast_state() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : module_->parameters()) {
    if (p.defined()) tensors.push_back(p);
  }
  for (const auto& b : module_->buffers()) {
    if (b.defined()) tensors.push_back(b);
  }
  // Broadcast writes in place: contiguous tensors go as they are, others
  // through a contiguous copy.
  for (auto& t : tensors) {
    std::vector<torch::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
    broadcast(group_, one, 0, "DataParallel initial state");
    if (!one[0].is_same(t)) t.copy_(one[0]);
  }
}

void DataParallel::average_gradients() {
  torch::NoGradGuard no_grad;
  // Buckets of same-dtype, same-device gradients in parameter order, so every
  // rank builds the same buckets.
  struct Bucket {
    std::vector<torch::Tensor> grads;
    int64_t bytes = 0;
  };
  std::vector<Bucket> buckets;
  std::map<std::tuple<int, int, int>, size_t> open;  // (dtype, device type, index) → bucket
  for (auto& p : module_->parameters()) {
    if (!p.defined() || !p.requires_grad()) continue;
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    const auto& g = p.grad();
    const auto key = std::make_tuple(static_cast<int>(g.scalar_type()), static_cast<int>(g.device().type()),
                                     static_cast<int>(g.device().index()));
    const int64_t bytes = g.numel() * static_cast<int64_t>(g.element_size());
    auto it = open.find(key);
    if (it == open.end() || buckets[it->second].bytes + bytes > options_.bucket_bytes()) {
      buckets.emplace_back();
      it = open.insert_or_assign(key, buckets.size() - 1).first;
    }
    buckets[it->second].grads.push_back(g);
    buckets[it->second].bytes += bytes;
  }
  std::vector<std::vector<torch::Tensor>> flat(buckets.size());
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (size_t i = 0; i < buckets.size(); ++i) {
    std::vector<torch::Tensor> pieces;
    for (const auto& g : buckets[i].grads) pieces.push_back(g.reshape({-1}));
    flat[i] = {torch::cat(pieces)};
    works.push_back(group_->allreduce(flat[i]));  // all in flight together
  }
  const double inv_world = 1.0 / static_cast<double>(world_size());
  for (size_t i = 0; i < buckets.size(); ++i) {
    wait_for(group_, works[i], "all_reduce", "DataParallel gradient averaging");
    flat[i][0].mul_(inv_world);
    int64_t offset = 0;
    for (auto& g : buckets[i].grads) {
      g.copy_(flat[i][0].narrow(0, offset, g.numel()).view_as(g));
      offset += g.numel();
    }
  }
}

std::vector<double> DataParallel::sum(const std::vector<double>& values, const char* what) {
  std::vector<torch::Tensor> t{torch::tensor(values, torch::kDouble)};
  all_reduce_sum(group_, t, what);
  const auto* data = t[0].data_ptr<double>();
  return std::vector<double>(data, data + values.size());
}

std::pair<int64_t, int64_t> DataParallel::shard(int64_t n) const {
  const int64_t w = world_size();
  const int64_t r = rank();
  const int64_t base = n / w;
  const int64_t extra = n % w;  // the first `extra` ranks take one more
  const int64_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

}  // namespace bnlab::distributed
