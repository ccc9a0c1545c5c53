#include "bnlab/nn/functional/batch_norm.h"

#include "bnlab/autograd/batch_norm.h"

namespace bnlab::functional {

namespace {
c10::optional<torch::Tensor> optional_if_defined(const torch::Tensor& t) {
  return t.defined() ? c10::optional<torch::Tensor>(t) : c10::nullopt;
}
}  // namespace

torch::Tensor batch_norm(const torch::Tensor& input, const torch::Tensor& running_mean,
                         const torch::Tensor& running_var, torch::Tensor weight,
                         torch::Tensor bias, bool training, c10::optional<double> momentum,
                         double eps) {
  const bool updates_running_stats = training && running_mean.defined();
  TORCH_CHECK(momentum.has_value() || !updates_running_stats,
              "bnlab::functional::batch_norm: momentum=nullopt (cumulative average) needs the "
              "number of batches seen, which only the module tracks; pass the factor "
              "1/num_batches_tracked as momentum, got nullopt");
  return autograd::BatchNormFunction::apply(input, optional_if_defined(weight),
                                            optional_if_defined(bias),
                                            optional_if_defined(running_mean),
                                            optional_if_defined(running_var), training,
                                            momentum.value_or(0.0), eps);
}

torch::Tensor batch_norm(const torch::Tensor& input, const torch::Tensor& running_mean,
                         const torch::Tensor& running_var, const BatchNormFuncOptions& options) {
  return batch_norm(input, running_mean, running_var, options.weight(), options.bias(),
                    options.training(), options.momentum(), options.eps());
}

}  // namespace bnlab::functional
