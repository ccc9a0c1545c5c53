#include "bnlab/nn/functional/batch_norm_act.h"

#include "bnlab/autograd/batch_norm_act.h"

namespace bnlab::functional {

namespace {
c10::optional<torch::Tensor> optional_if_defined(const torch::Tensor& t) {
  return t.defined() ? c10::optional<torch::Tensor>(t) : c10::nullopt;
}
}  // namespace

torch::Tensor batch_norm_act(const torch::Tensor& input, const torch::Tensor& running_mean,
                             const torch::Tensor& running_var, const torch::Tensor& weight, const torch::Tensor& bias,
                             bool training, c10::optional<double> momentum, double eps,
                             const autograd::ActivationParams& activation) {
  TORCH_CHECK(momentum.has_value() || !(training && running_mean.defined()),
              "bnlab::functional::batch_norm_act: momentum=nullopt (cumulative average) needs the number of "
              "batches seen, which only the module tracks; pass the factor 1/num_batches_tracked as momentum, "
              "got nullopt");
  return autograd::BatchNormActFunction::apply(input, optional_if_defined(weight), optional_if_defined(bias),
                                               optional_if_defined(running_mean), optional_if_defined(running_var),
                                               training, momentum.value_or(0.0), eps, activation, nullptr);
}

}  // namespace bnlab::functional
