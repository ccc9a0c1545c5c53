#include "bnlab/models/mlp.h"

#include "bnlab/nn/modules/batch_norm.h"

#include <torch/torch.h>

namespace bnlab::models {

torch::nn::Sequential make_mlp(const MlpOptions& options) {
  TORCH_CHECK(options.in_features() > 0 && options.out_features() > 0 && options.width() > 0 &&
                  options.depth() >= 0,
              "bnlab::models::make_mlp: expected positive in_features, out_features and width and "
              "depth >= 0, got in_features=",
              options.in_features(), ", out_features=", options.out_features(),
              ", width=", options.width(), ", depth=", options.depth());
  torch::nn::Sequential net;
  int64_t fan_in = options.in_features();
  for (int64_t layer = 0; layer < options.depth(); ++layer) {
    net->push_back(torch::nn::Linear(
        torch::nn::LinearOptions(fan_in, options.width()).bias(!options.batch_norm())));
    if (options.batch_norm()) net->push_back(nn::BatchNorm1d(options.width()));
    net->push_back(torch::nn::Tanh());
    fan_in = options.width();
  }
  net->push_back(torch::nn::Linear(fan_in, options.out_features()));
  return net;
}

}  // namespace bnlab::models
