#include "bnlab/nn/modules/sync_batch_norm.h"

#include "bnlab/autograd/batch_norm.h"
#include "bnlab/autograd/sync_batch_norm.h"
#include "bnlab/nn/modules/batch_norm_act.h"
#include "nn/modules/batch_norm_state.h"

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <string>

namespace bnlab::nn {

namespace {

c10::optional<torch::Tensor> optional(const torch::Tensor& t) {
  return t.defined() ? c10::optional<torch::Tensor>(t) : c10::nullopt;
}

bool synchronizes(const distributed::ProcessGroupPtr& group) { return group && group->getSize() > 1; }

}  // namespace

SyncBatchNormImpl::SyncBatchNormImpl(const SyncBatchNormOptions& options_)
    : options(options_), bn_options_(options_.batch_norm_options()) {
  TORCH_CHECK(options.num_features() > 0, "bnlab::nn::SyncBatchNorm: expected num_features > 0, got ",
              options.num_features());
  TORCH_CHECK(options.eps() >= 0, "bnlab::nn::SyncBatchNorm: expected eps >= 0, got ", options.eps());
  // NOLINTNEXTLINE(clang-analyzer-optin.cplusplus.VirtualCall): as in torch::nn
  reset();
}

void SyncBatchNormImpl::reset() {
  detail::register_batch_norm_tensors(*this, bn_options_,
                                      {weight, bias, running_mean, running_var, num_batches_tracked});
}

void SyncBatchNormImpl::reset_running_stats() {
  detail::reset_running_stats(bn_options_, {weight, bias, running_mean, running_var, num_batches_tracked});
}

void SyncBatchNormImpl::reset_parameters() {
  detail::reset_parameters(bn_options_, {weight, bias, running_mean, running_var, num_batches_tracked});
}

void SyncBatchNormImpl::pretty_print(std::ostream& stream) const {
  const auto& group = options.process_group();
  stream << fmt::format("bnlab::nn::SyncBatchNorm({}, {}, world_size={})", options.num_features(),
                        detail::options_string(bn_options_), group ? group->getSize() : 1);
}

torch::Tensor SyncBatchNormImpl::forward(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() >= 2, "bnlab::nn::SyncBatchNorm: expected input of shape (N, C, *) with at least 2 "
              "dimensions, got ", input.dim(), "D input");
  TORCH_CHECK(input.size(1) == options.num_features(), "bnlab::nn::SyncBatchNorm: expected input with ",
              options.num_features(), " channels (dim 1, num_features), got ", input.size(1),
              " channels in input of shape ", input.sizes());
  const bool use_batch_stats = is_training() || !options.track_running_stats();
  const bool pass_running = !is_training() || options.track_running_stats();
  const double factor = detail::exponential_average_factor(is_training(), bn_options_, num_batches_tracked);
  torch::Tensor output;
  // Synchronized only when training with batch statistics over several ranks
  // (eval mode needs no communication, as in PyTorch).
  if (is_training() && synchronizes(options.process_group())) {
    output = autograd::SyncBatchNormFunction::apply(
        input, optional(weight), optional(bias), optional(pass_running ? running_mean : torch::Tensor()),
        optional(pass_running ? running_var : torch::Tensor()), factor, options.eps(), options.process_group(),
        probe_.get());
  } else {
    output = autograd::BatchNormFunction::apply(
        input, optional(weight), optional(bias), optional(pass_running ? running_mean : torch::Tensor()),
        optional(pass_running ? running_var : torch::Tensor()), use_batch_stats, factor, options.eps(),
        probe_.get());
  }
  capture(input, output);
  if (detail::counts_batches(is_training(), bn_options_, num_batches_tracked)) {
    torch::NoGradGuard no_grad;
    num_batches_tracked.add_(1);
  }
  return output;
}

void SyncBatchNormImpl::to(torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(dtype, non_blocking);
  detail::keep_counter_integral(num_batches_tracked);
}

void SyncBatchNormImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(device, dtype, non_blocking);
  detail::keep_counter_integral(num_batches_tracked);
}

void SyncBatchNormImpl::to(torch::Device device, bool non_blocking) { torch::nn::Module::to(device, non_blocking); }

SyncBatchNormImpl::SyncBatchNormImpl(const SyncBatchNormOptions& options_, Adopt)
    : options(options_), bn_options_(options_.batch_norm_options()) {}

std::shared_ptr<SyncBatchNormImpl> SyncBatchNormImpl::adopting(const SyncBatchNormOptions& options,
                                                               torch::nn::Module& from) {
  std::shared_ptr<SyncBatchNormImpl> sync(new SyncBatchNormImpl(options, Adopt{}));
  const auto params = from.named_parameters(/*recurse=*/false);
  const auto buffers = from.named_buffers(/*recurse=*/false);
  auto take = [&](const auto& dict, const char* name, torch::Tensor& member, bool parameter) {
    const auto* found = dict.find(name);
    const torch::Tensor t = found != nullptr ? *found : torch::Tensor();
    // An option switched off leaves the name registered but undefined, as in torch::nn.
    member = parameter ? sync->register_parameter(name, t, t.defined() && t.requires_grad())
                       : sync->register_buffer(name, t);
  };
  take(params, "weight", sync->weight, true);
  take(params, "bias", sync->bias, true);
  take(buffers, "running_mean", sync->running_mean, false);
  take(buffers, "running_var", sync->running_var, false);
  take(buffers, "num_batches_tracked", sync->num_batches_tracked, false);
  sync->train(from.is_training());
  return sync;
}

namespace {

// A SyncBatchNorm holding `bn`'s state, or nullptr when `module` is not a bnlab BatchNorm.
bool is_plain_batch_norm(const torch::nn::Module* module) {
  return dynamic_cast<const BatchNormLayer*>(module) != nullptr &&
         dynamic_cast<const SyncBatchNormImpl*>(module) == nullptr;
}

std::shared_ptr<SyncBatchNormImpl> sync_version(const std::shared_ptr<torch::nn::Module>& module,
                                                const distributed::ProcessGroupPtr& group) {
  if (!is_plain_batch_norm(module.get())) return nullptr;
  const auto* bn = dynamic_cast<const BatchNormLayer*>(module.get());
  const auto& o = bn->batch_norm_options();
  return SyncBatchNormImpl::adopting(SyncBatchNormOptions(o.num_features())
                                         .eps(o.eps())
                                         .momentum(o.momentum())
                                         .affine(o.affine())
                                         .track_running_stats(o.track_running_stats())
                                         .process_group(group),
                                     *module);
}

void convert_children(torch::nn::Module& parent, const std::string& path, const distributed::ProcessGroupPtr& group) {
  auto* sequential = dynamic_cast<torch::nn::SequentialImpl*>(&parent);
  auto* list = dynamic_cast<torch::nn::ModuleListImpl*>(&parent);
  if (sequential != nullptr) {
    size_t index = 0;
    for (auto it = sequential->begin(); it != sequential->end(); ++it, ++index) {
      if (auto sync = sync_version(it->ptr(), group)) {
        *it = torch::nn::AnyModule(SyncBatchNorm(sync));
        parent.replace_module(std::to_string(index), sync);
      }
    }
  } else if (list != nullptr) {
    size_t index = 0;
    for (auto it = list->begin(); it != list->end(); ++it, ++index) {
      if (auto sync = sync_version(*it, group)) {
        *it = sync;
        parent.replace_module(std::to_string(index), sync);
      }
    }
  }
  for (const auto& child : parent.named_children()) {
    const std::string child_path = path.empty() ? child.key() : path + "." + child.key();
    if (dynamic_cast<BatchNormActImpl*>(child.value().get()) != nullptr) {
      spdlog::warn("bnlab::nn::convert_sync_batchnorm: {} is a BatchNormAct; its statistics stay per rank",
                   child_path);
      continue;
    }
    TORCH_CHECK(!is_plain_batch_norm(child.value().get()), "bnlab::nn::convert_sync_batchnorm: cannot swap ",
                child_path, " (a BatchNorm registered directly in a ", parent.name(),
                ", whose forward calls its own handle); expected BatchNorm layers inside torch::nn::Sequential or "
                "ModuleList, or the model built with bnlab::nn::SyncBatchNorm");
    convert_children(*child.value(), child_path, group);
  }
}

}  // namespace

std::shared_ptr<torch::nn::Module> convert_sync_batchnorm(std::shared_ptr<torch::nn::Module> module,
                                                          const distributed::ProcessGroupPtr& process_group) {
  TORCH_CHECK(module != nullptr, "bnlab::nn::convert_sync_batchnorm: expected a module, got nullptr");
  if (auto sync = sync_version(module, process_group)) return sync;
  convert_children(*module, "", process_group);
  return module;
}

}  // namespace bnlab::nn
