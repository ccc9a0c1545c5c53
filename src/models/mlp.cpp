#include "bnlab/models/mlp.h"

#include "bnlab/nn/modules/batch_norm.h"
#include "bnlab/nn/modules/batch_norm_act.h"

#include <torch/torch.h>

#include <cmath>

namespace bnlab::models {

BatchNormPlacement batch_norm_placement_from_string(const std::string& name) {
  if (name == "none" || name == "off") return BatchNormPlacement::kNone;
  if (name == "before") return BatchNormPlacement::kBefore;
  if (name == "after") return BatchNormPlacement::kAfter;
  TORCH_CHECK(false, "bnlab: unknown BatchNorm placement \"", name, "\"; expected one of none, before, after");
}

const char* to_string(BatchNormPlacement placement) {
  switch (placement) {
    case BatchNormPlacement::kBefore: return "before";
    case BatchNormPlacement::kAfter: return "after";
    default: return "none";
  }
}

InitScheme init_scheme_from_string(const std::string& name) {
  if (name == "default") return InitScheme::kDefault;
  if (name == "kaiming") return InitScheme::kKaiming;
  if (name == "naive") return InitScheme::kNaive;
  if (name == "gain") return InitScheme::kCustomGain;
  TORCH_CHECK(false, "bnlab: unknown init scheme \"", name, "\"; expected one of default, kaiming, naive, gain");
}

const char* to_string(InitScheme scheme) {
  switch (scheme) {
    case InitScheme::kKaiming: return "kaiming";
    case InitScheme::kNaive: return "naive";
    case InitScheme::kCustomGain: return "gain";
    default: return "default";
  }
}

double recommended_gain(const std::string& activation, const nn::ActivationOptions& options) {
  if (activation == "tanh") return 5.0 / 3.0;
  if (activation == "relu") return std::sqrt(2.0);
  if (activation == "leaky_relu") {
    const double s = options.negative_slope();
    return std::sqrt(2.0 / (1.0 + s * s));
  }
  return 1.0;
}

torch::nn::Sequential make_mlp(const MlpOptions& o) {
  TORCH_CHECK(o.in_features() > 0 && o.out_features() > 0 && o.width() > 0 && o.depth() >= 0,
              "bnlab::models::make_mlp: expected positive in_features, out_features and width and depth >= 0, got "
              "in_features=",
              o.in_features(), ", out_features=", o.out_features(), ", width=", o.width(), ", depth=", o.depth());
  TORCH_CHECK(o.vocab_size() >= 0 && (o.vocab_size() == 0 || o.embedding_dim() > 0),
              "bnlab::models::make_mlp: expected embedding_dim > 0 with a vocabulary, got ", o.embedding_dim());
  TORCH_CHECK(!o.fuse_batch_norm() || o.batch_norm() == BatchNormPlacement::kBefore,
              "bnlab::models::make_mlp: fuse_batch_norm expects BatchNorm before the activation, got batch_norm=",
              to_string(o.batch_norm()));
  const bool maxout = o.activation() == "maxout";
  const int64_t pieces = maxout ? o.activation_options().pieces() : 1;
  const double gain = o.init() == InitScheme::kCustomGain ? o.gain()
                                                          : recommended_gain(o.activation(), o.activation_options());
  torch::nn::Sequential net;
  int64_t fan_in = o.in_features();
  if (o.vocab_size() > 0) {
    net->push_back(torch::nn::Embedding(o.vocab_size(), o.embedding_dim()));
    net->push_back(torch::nn::Flatten());
    fan_in = o.in_features() * o.embedding_dim();
  }
  torch::NoGradGuard no_grad;
  for (int64_t block = 0; block < o.depth(); ++block) {
    const int64_t linear_out = o.width() * pieces;
    const bool bn_follows = o.batch_norm() == BatchNormPlacement::kBefore;
    torch::nn::Linear linear(torch::nn::LinearOptions(fan_in, linear_out).bias(!bn_follows));
    switch (o.init()) {
      case InitScheme::kDefault: break;
      case InitScheme::kNaive: linear->weight.normal_(0.0, 1.0); break;
      case InitScheme::kKaiming:
      case InitScheme::kCustomGain:
        linear->weight.normal_(0.0, gain / std::sqrt(static_cast<double>(fan_in)));
        break;
    }
    if (o.init() != InitScheme::kDefault && linear->bias.defined()) linear->bias.zero_();
    net->push_back(linear);
    if (bn_follows && o.fuse_batch_norm()) {
      net->push_back(nn::BatchNormAct(
          nn::BatchNormActOptions(linear_out).activation(o.activation()).activation_options(o.activation_options())));
    } else {
      if (bn_follows) net->push_back(nn::BatchNorm1d(linear_out));
      net->push_back(nn::make_activation(o.activation(), o.activation_options()));
    }
    if (o.batch_norm() == BatchNormPlacement::kAfter) net->push_back(nn::BatchNorm1d(o.width()));
    fan_in = o.width();
  }
  net->push_back(torch::nn::Linear(fan_in, o.out_features()));
  return net;
}

}  // namespace bnlab::models
