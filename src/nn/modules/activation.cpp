#include "bnlab/nn/modules/activation.h"

#include "kernels/activation.h"

#include <torch/torch.h>

#include <fmt/format.h>

namespace bnlab::nn {

namespace {

using autograd::ActivationKind;
using autograd::ActivationParams;

void check_threshold(double t, const char* module) {
  TORCH_CHECK(t > 0.0 && t < 1.0, "bnlab::nn::", module,
              ": expected saturation_threshold in (0, 1), got ", t);
}

// A compact number for pretty_print (0.97, 0.01, -1).
std::string num(double v) { return fmt::format("{}", v); }

}  // namespace

template <typename Derived, typename Options>
torch::Tensor ElementwiseActivationImpl<Derived, Options>::forward(const torch::Tensor& input) {
  bool inplace = false;
  if constexpr (std::is_same_v<Options, ReLUOptions> || std::is_same_v<Options, LeakyReLUOptions> ||
                std::is_same_v<Options, ELUOptions> || std::is_same_v<Options, HardtanhOptions>) {
    inplace = options.inplace();
  }
  auto output = autograd::ElementwiseActivationFunction::apply(input, params(), probe_.get(), inplace);
  capture(input, output);
  return output;
}

template <typename Derived, typename Options>
torch::Tensor ElementwiseActivationImpl<Derived, Options>::saturated(const torch::Tensor& input) const {
  torch::NoGradGuard no_grad;
  const auto p = params();
  return kernels::activation_saturated(input, kernels::activation_composite(input, p), p);
}

template <typename Derived, typename Options>
torch::Tensor ElementwiseActivationImpl<Derived, Options>::local_derivative(
    const torch::Tensor& input) const {
  const auto p = params();
  const auto output = autograd::derivative_from_output(p.kind) ? kernels::activation_composite(input, p)
                                                               : torch::Tensor();
  return kernels::activation_derivative(input, output, p);
}

template <typename Derived, typename Options>
double ElementwiseActivationImpl<Derived, Options>::max_local_derivative() const {
  return autograd::max_local_derivative(params());
}

template <typename Derived, typename Options>
bool ElementwiseActivationImpl<Derived, Options>::can_saturate() const {
  return params().kind != ActivationKind::kLeakyReLU;
}

template <typename Derived, typename Options>
c10::optional<std::pair<double, double>> ElementwiseActivationImpl<Derived, Options>::output_bounds()
    const {
  const auto p = params();
  switch (p.kind) {
    case ActivationKind::kTanh:
    case ActivationKind::kSoftsign: return std::make_pair(-1.0, 1.0);
    case ActivationKind::kSigmoid: return std::make_pair(0.0, 1.0);
    case ActivationKind::kHardtanh: return std::make_pair(p.min_val, p.max_val);
    default: return c10::nullopt;
  }
}

// ---- the modules --------------------------------------------------------------

TanhImpl::TanhImpl(const TanhOptions& o) : ElementwiseActivationImpl(o) {
  check_threshold(o.saturation_threshold(), "Tanh");
}
ActivationParams TanhImpl::params() const {
  ActivationParams p;
  p.kind = ActivationKind::kTanh;
  p.saturation_threshold = options.saturation_threshold();
  return p;
}
void TanhImpl::pretty_print(std::ostream& s) const {
  s << "bnlab::nn::Tanh(saturation_threshold=" << num(options.saturation_threshold()) << ")";
}

SigmoidImpl::SigmoidImpl(const SigmoidOptions& o) : ElementwiseActivationImpl(o) {
  check_threshold(o.saturation_threshold(), "Sigmoid");
}
ActivationParams SigmoidImpl::params() const {
  ActivationParams p;
  p.kind = ActivationKind::kSigmoid;
  p.saturation_threshold = options.saturation_threshold();
  return p;
}
void SigmoidImpl::pretty_print(std::ostream& s) const {
  s << "bnlab::nn::Sigmoid(saturation_threshold=" << num(options.saturation_threshold()) << ")";
}

SoftsignImpl::SoftsignImpl(const SoftsignOptions& o) : ElementwiseActivationImpl(o) {
  check_threshold(o.saturation_threshold(), "Softsign");
}
ActivationParams SoftsignImpl::params() const {
  ActivationParams p;
  p.kind = ActivationKind::kSoftsign;
  p.saturation_threshold = options.saturation_threshold();
  return p;
}
void SoftsignImpl::pretty_print(std::ostream& s) const {
  s << "bnlab::nn::Softsign(saturation_threshold=" << num(options.saturation_threshold()) << ")";
}

HardtanhImpl::HardtanhImpl(const HardtanhOptions& o) : ElementwiseActivationImpl(o) {
  TORCH_CHECK(o.max_val() > o.min_val(), "bnlab::nn::Hardtanh: expected max_val > min_val, got min_val=",
              o.min_val(), ", max_val=", o.max_val());
  check_threshold(o.saturation_threshold(), "Hardtanh");
}
ActivationParams HardtanhImpl::params() const {
  ActivationParams p;
  p.kind = ActivationKind::kHardtanh;
  p.min_val = options.min_val();
  p.max_val = options.max_val();
  p.saturation_threshold = options.saturation_threshold();
  return p;
}
void HardtanhImpl::pretty_print(std::ostream& s) const {
  s << "bnlab::nn::Hardtanh(min_val=" << num(options.min_val()) << ", max_val=" << num(options.max_val())
    << (options.inplace() ? ", inplace=true" : "") << ")";
}

ReLUImpl::ReLUImpl(const ReLUOptions& o) : ElementwiseActivationImpl(o) {
  check_threshold(o.saturation_threshold(), "ReLU");
}
ActivationParams ReLUImpl::params() const {
  ActivationParams p;
  p.kind = ActivationKind::kReLU;
  p.saturation_threshold = options.saturation_threshold();
  return p;
}
void ReLUImpl::pretty_print(std::ostream& s) const {
  s << "bnlab::nn::ReLU(" << (options.inplace() ? "inplace=true" : "") << ")";
}

LeakyReLUImpl::LeakyReLUImpl(const LeakyReLUOptions& o) : ElementwiseActivationImpl(o) {
  TORCH_CHECK(!o.inplace() || o.negative_slope() >= 0,
              "bnlab::nn::LeakyReLU: in-place needs negative_slope >= 0, got ", o.negative_slope());
  check_threshold(o.saturation_threshold(), "LeakyReLU");
}
ActivationParams LeakyReLUImpl::params() const {
  ActivationParams p;
  p.kind = ActivationKind::kLeakyReLU;
  p.negative_slope = options.negative_slope();
  p.saturation_threshold = options.saturation_threshold();
  return p;
}
void LeakyReLUImpl::pretty_print(std::ostream& s) const {
  s << "bnlab::nn::LeakyReLU(negative_slope=" << num(options.negative_slope())
    << (options.inplace() ? ", inplace=true" : "") << ")";
}

ELUImpl::ELUImpl(const ELUOptions& o) : ElementwiseActivationImpl(o) {
  TORCH_CHECK(o.alpha() > 0, "bnlab::nn::ELU: expected alpha > 0, got ", o.alpha());
  check_threshold(o.saturation_threshold(), "ELU");
}
ActivationParams ELUImpl::params() const {
  ActivationParams p;
  p.kind = ActivationKind::kELU;
  p.alpha = options.alpha();
  p.saturation_threshold = options.saturation_threshold();
  return p;
}
void ELUImpl::pretty_print(std::ostream& s) const {
  s << "bnlab::nn::ELU(alpha=" << num(options.alpha()) << ", saturation_threshold="
    << num(options.saturation_threshold()) << (options.inplace() ? ", inplace=true" : "") << ")";
}

GELUImpl::GELUImpl(const GELUOptions& o) : ElementwiseActivationImpl(o) {
  TORCH_CHECK(o.approximate() == "none" || o.approximate() == "tanh",
              "bnlab::nn::GELU: expected approximate \"none\" or \"tanh\", got \"", o.approximate(), "\"");
  check_threshold(o.saturation_threshold(), "GELU");
}
ActivationParams GELUImpl::params() const {
  ActivationParams p;
  p.kind = options.approximate() == "tanh" ? ActivationKind::kGELUTanh : ActivationKind::kGELU;
  p.saturation_threshold = options.saturation_threshold();
  return p;
}
void GELUImpl::pretty_print(std::ostream& s) const {
  s << "bnlab::nn::GELU(approximate=" << options.approximate()
    << ", saturation_threshold=" << num(options.saturation_threshold()) << ")";
}

SiLUImpl::SiLUImpl(const SiLUOptions& o) : ElementwiseActivationImpl(o) {
  check_threshold(o.saturation_threshold(), "SiLU");
}
ActivationParams SiLUImpl::params() const {
  ActivationParams p;
  p.kind = ActivationKind::kSiLU;
  p.saturation_threshold = options.saturation_threshold();
  return p;
}
void SiLUImpl::pretty_print(std::ostream& s) const {
  s << "bnlab::nn::SiLU(saturation_threshold=" << num(options.saturation_threshold()) << ")";
}

template class ElementwiseActivationImpl<TanhImpl, TanhOptions>;
template class ElementwiseActivationImpl<SigmoidImpl, SigmoidOptions>;
template class ElementwiseActivationImpl<SoftsignImpl, SoftsignOptions>;
template class ElementwiseActivationImpl<HardtanhImpl, HardtanhOptions>;
template class ElementwiseActivationImpl<ReLUImpl, ReLUOptions>;
template class ElementwiseActivationImpl<LeakyReLUImpl, LeakyReLUOptions>;
template class ElementwiseActivationImpl<ELUImpl, ELUOptions>;
template class ElementwiseActivationImpl<GELUImpl, GELUOptions>;
template class ElementwiseActivationImpl<SiLUImpl, SiLUOptions>;

// ---- Maxout -----------------------------------------------------------------

MaxoutImpl::MaxoutImpl(const MaxoutOptions& o) : options(o) {
  TORCH_CHECK(o.pieces() >= 1, "bnlab::nn::Maxout: expected pieces >= 1, got ", o.pieces());
}

torch::Tensor MaxoutImpl::forward(const torch::Tensor& input) {
  auto output = autograd::MaxoutFunction::apply(input, options.pieces(), probe_.get());
  capture(input, output);
  return output;
}

torch::Tensor MaxoutImpl::saturated(const torch::Tensor& input) const {
  TORCH_CHECK(input.dim() >= 2 && input.size(1) % options.pieces() == 0,
              "bnlab::nn::Maxout: expected an input (N, C·k, *) with k=", options.pieces(),
              ", got shape ", input.sizes());
  auto shape = input.sizes().vec();
  shape[1] /= options.pieces();
  return torch::zeros(shape, input.options().dtype(torch::kBool));
}

torch::Tensor MaxoutImpl::local_derivative(const torch::Tensor& input) const {
  // ∂y/∂x: 1 at each group's winner (the first on ties, as torch.max), 0 elsewhere.
  auto x = input.detach().requires_grad_(true);
  torch::Tensor grad;
  {
    torch::AutoGradMode enable(true);
    auto y = autograd::MaxoutFunction::apply(x, options.pieces(), nullptr);
    grad = torch::autograd::grad({y}, {x}, {torch::ones_like(y)})[0];
  }
  return grad;
}

void MaxoutImpl::pretty_print(std::ostream& s) const {
  s << "bnlab::nn::Maxout(pieces=" << options.pieces() << ")";
}

}  // namespace bnlab::nn
