// Composite (device-generic) implementation of the batch-norm building blocks.
#include "kernels/batch_norm.h"

#include "bnlab/nn/probe.h"
#include "kernels/batch_norm_drift.h"
#include "kernels/cpu/batch_norm_kernel.h"
#include "kernels/reduce.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace bnlab::kernels {

namespace {

// Reductions accumulate in float64 for float32 inputs on CPU, as PyTorch's CPU
// batch norm does (at::acc_type<float, /*is_cuda=*/false> is double); on other
// devices in the statistics dtype.
torch::ScalarType accumulate_dtype(const torch::Tensor& input) {
  if (input.is_cpu()) return torch::kDouble;
  return stats_dtype(input.scalar_type());
}

}  // namespace

torch::ScalarType stats_dtype(torch::ScalarType input_dtype) {
  return input_dtype == torch::kDouble ? torch::kDouble : torch::kFloat;
}

int64_t values_per_channel(const torch::Tensor& input) {
  return input.size(1) == 0 ? 0 : input.numel() / input.size(1);
}

std::vector<int64_t> reduction_dims(int64_t dim) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < dim; ++d) dims.push_back(d);
  return dims;
}

torch::Tensor as_channel_view(const torch::Tensor& per_channel, int64_t dim) {
  std::vector<int64_t> shape(static_cast<size_t>(dim), 1);
  shape[1] = per_channel.numel();
  return per_channel.view(shape);
}

std::tuple<torch::Tensor, torch::Tensor> batch_norm_stats(const torch::Tensor& input) {
  const auto out_dtype = stats_dtype(input.scalar_type());
  const int64_t channels = input.size(1);
  if (values_per_channel(input) == 0) {
    auto zeros = torch::zeros({channels}, input.options().dtype(out_dtype));
    return {zeros, zeros.clone()};
  }
  if (cpu_kernels_apply(input)) {
    // bnlab's CPU statistics kernel (one read, float64 accumulation) rather
    // than a float64 copy of the input followed by var_mean.
    const torch::Tensor x = detail::kernel_layout(input).has_value() ? input : input.contiguous();
    std::vector<double> mean(static_cast<size_t>(channels)), var(static_cast<size_t>(channels));
    cpu::batch_norm_stats_stub.get()(x, *detail::kernel_layout(x), mean.data(), var.data());
    return {detail::from_doubles(mean, out_dtype), detail::from_doubles(var, out_dtype)};
  }
  auto x = input.to(accumulate_dtype(input));
  auto [var, mean] = at::var_mean(x, reduction_dims(input.dim()), /*unbiased=*/false,
                                  /*keepdim=*/false);
  return {mean.to(out_dtype), var.to(out_dtype)};
}

torch::Tensor invstd_from_var(const torch::Tensor& var, double eps) {
  return (var + eps).rsqrt();
}

void update_running_stats(const torch::Tensor& running_mean, const torch::Tensor& running_var,
                          const torch::Tensor& mean, const torch::Tensor& var, int64_t count,
                          double momentum) {
  if (count == 0) return;  // an empty batch carries no statistics
  torch::NoGradGuard no_grad;
  // Bessel's correction M/(M-1) turns the biased batch variance into the unbiased one.
  const double unbias = count > 1 ? static_cast<double>(count) / static_cast<double>(count - 1)
                                  : std::numeric_limits<double>::quiet_NaN();
  if (running_mean.defined()) {
    const auto acc = running_mean.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
    auto updated = running_mean.to(acc) * (1.0 - momentum) + mean.to(acc) * momentum;
    running_mean.copy_(updated);
  }
  if (running_var.defined()) {
    const auto acc = running_var.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
    auto updated = running_var.to(acc) * (1.0 - momentum) + var.to(acc) * (momentum * unbias);
    running_var.copy_(updated);
  }
}

torch::Tensor batch_norm_transform(const torch::Tensor& input, const torch::Tensor& mean,
                                   const torch::Tensor& invstd, const torch::Tensor& weight,
                                   const torch::Tensor& bias) {
  const auto sdt = stats_dtype(input.scalar_type());
  const int64_t dim = input.dim();
  // y = (x − μ)·s + β with s = r·γ: subtracting μ first keeps y accurate when
  // |μ| is large against σ (x·s + (β − μ·s) would cancel).
  auto scale = weight.defined() ? invstd * weight.to(sdt) : invstd;
  auto centered = input.to(sdt) - as_channel_view(mean, dim);
  auto y = centered * as_channel_view(scale, dim);
  if (bias.defined()) y = y + as_channel_view(bias.to(sdt), dim);
  return y.to(input.scalar_type()).contiguous(input.suggest_memory_format());
}

std::tuple<torch::Tensor, torch::Tensor> batch_norm_backward_reduce(
    const torch::Tensor& grad_output, const torch::Tensor& input, const torch::Tensor& mean) {
  const auto acc = accumulate_dtype(input);
  const auto sdt = stats_dtype(input.scalar_type());
  const auto dims = reduction_dims(input.dim());
  auto g = grad_output.to(acc);
  auto sum_dy = g.sum(dims);
  auto sum_dy_xmu = (g * (input.to(acc) - as_channel_view(mean.to(acc), input.dim()))).sum(dims);
  return {sum_dy.to(sdt), sum_dy_xmu.to(sdt)};
}

torch::Tensor batch_norm_backward_input(const torch::Tensor& grad_output,
                                        const torch::Tensor& input, const torch::Tensor& mean,
                                        const torch::Tensor& invstd, const torch::Tensor& weight,
                                        const torch::Tensor& sum_dy,
                                        const torch::Tensor& sum_dy_xmu, int64_t count) {
  const auto sdt = stats_dtype(input.scalar_type());
  const int64_t dim = input.dim();
  if (count == 0) return torch::zeros_like(input, input.suggest_memory_format());
  // ∂L/∂x = γr·g − (x − μ)·(γ r³ Σg(x−μ)/M) − γ r Σg/M, with per-channel
  // a = γr, b = a·r²·Σg(x−μ)/M, c = a·Σg/M.
  auto a = weight.defined() ? invstd * weight.to(sdt) : invstd;
  auto b = a * invstd * invstd * sum_dy_xmu / static_cast<double>(count);
  auto c = a * sum_dy / static_cast<double>(count);
  auto centered = input.to(sdt) - as_channel_view(mean, dim);
  auto dx = grad_output.to(sdt) * as_channel_view(a, dim) - centered * as_channel_view(b, dim) -
            as_channel_view(c, dim);
  return dx.to(input.scalar_type()).contiguous(input.suggest_memory_format());
}

torch::Tensor batch_norm_backward_input_eval(const torch::Tensor& grad_output,
                                             const torch::Tensor& invstd,
                                             const torch::Tensor& weight) {
  const auto sdt = stats_dtype(grad_output.scalar_type());
  auto a = weight.defined() ? invstd * weight.to(sdt) : invstd;
  auto dx = grad_output.to(sdt) * as_channel_view(a, grad_output.dim());
  return dx.to(grad_output.scalar_type()).contiguous(grad_output.suggest_memory_format());
}

namespace {

bool cpu_vector(const torch::Tensor& t) {
  return !t.defined() || (t.device().is_cpu() && t.is_contiguous() &&
                          (t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble));
}

// A CPU float/double vector read as double, with the dtype check done once.
struct DoubleView {
  const float* f = nullptr;
  const double* d = nullptr;
  explicit DoubleView(const torch::Tensor& t) {
    if (!t.defined()) return;
    if (t.scalar_type() == torch::kDouble) {
      d = t.data_ptr<double>();
    } else {
      f = t.data_ptr<float>();
    }
  }
  explicit DoubleView(const double* values) : d(values) {}
  bool defined() const { return f != nullptr || d != nullptr; }
  double operator[](int64_t c) const { return d != nullptr ? d[c] : static_cast<double>(f[c]); }
};

// The batch statistics a drift row compares with the running ones: tensors,
// or the CPU forward's own host vectors of C doubles (no tensors made around
// them on every recorded step unless the device path needs them).
struct BatchMoments {
  torch::Tensor mean, var;
  const double* host_mean = nullptr;
  const double* host_var = nullptr;

  bool defined() const { return host_mean != nullptr || mean.defined(); }
  bool readable_on_host() const { return host_mean != nullptr || (cpu_vector(mean) && cpu_vector(var)); }
  DoubleView mean_view() const { return host_mean != nullptr ? DoubleView(host_mean) : DoubleView(mean); }
  DoubleView var_view() const { return host_var != nullptr ? DoubleView(host_var) : DoubleView(var); }
  std::pair<torch::Tensor, torch::Tensor> tensors(int64_t channels) const {
    if (host_mean == nullptr) return {mean, var};
    return {torch::from_blob(const_cast<double*>(host_mean), {channels}, torch::kDouble),
            torch::from_blob(const_cast<double*>(host_var), {channels}, torch::kDouble)};
  }
};

// The four vectors, C values each, one after another (NaN for a missing one).
void copy_channel_vectors(double* out, const DoubleView (&sources)[4], int64_t channels) {
  const double nan = std::nan("");
  for (int k = 0; k < 4; ++k) {
    if (!sources[k].defined()) {
      std::fill_n(out + k * channels, channels, nan);
      continue;
    }
    for (int64_t c = 0; c < channels; ++c) out[k * channels + c] = sources[k][c];
  }
}

// batch_norm_drift_stats on the host, from views of the four vectors
// (batch mean, batch var, running mean, running var; a pair may be undefined):
// plain loops, no tensor ops, as this runs for every BatchNorm on every recorded step.
void host_drift_stats(const torch::Tensor& stats, const torch::Tensor& channel_stats, const DoubleView (&sources)[4],
                      double eps, int64_t channels, int64_t count) {
  namespace slot = nn::batch_norm_stat;
  auto* s = stats.data_ptr<double>();
  s[slot::kChannels] = static_cast<double>(channels);
  s[slot::kValuesPerChannel] = static_cast<double>(count);
  if (channel_stats.defined()) {
    copy_channel_vectors(channel_stats.data_ptr<double>(), sources, channels);
    return;
  }
  const DriftSummary d = summarize_drift(sources[0], sources[1], sources[2], sources[3], sources[0].defined(),
                                         sources[2].defined(), channels, eps);
  s[slot::kBatchMeanAvg] = d.batch_mean;
  s[slot::kBatchVarAvg] = d.batch_var;
  s[slot::kRunningMeanAvg] = d.running_mean;
  s[slot::kRunningVarAvg] = d.running_var;
  s[slot::kMeanDrift] = d.mean_drift;
  s[slot::kVarDrift] = d.var_drift;
}

void check_channel_stats(const torch::Tensor& channel_stats, int64_t channels) {
  TORCH_CHECK(channel_stats.numel() == 4 * channels && channel_stats.scalar_type() == torch::kDouble,
              "bnlab::batch_norm: expected the probe's channel_stats to be float64 of 4*C = ", 4 * channels,
              " values, got ", channel_stats.scalar_type(), " of ", channel_stats.numel());
}

// The four per-channel vectors into a defined `channel_stats`: plain loops
// when everything is readable on the host, device copies otherwise.
void write_channel_stats(const torch::Tensor& channel_stats, const BatchMoments& batch,
                         const torch::Tensor& running_mean, const torch::Tensor& running_var, int64_t channels) {
  torch::NoGradGuard no_grad;
  check_channel_stats(channel_stats, channels);
  const double nan = std::nan("");
  if (channel_stats.device().is_cpu() && batch.readable_on_host() && cpu_vector(running_mean) &&
      cpu_vector(running_var)) {
    const DoubleView sources[4] = {batch.mean_view(), batch.var_view(), DoubleView(running_mean),
                                   DoubleView(running_var)};
    copy_channel_vectors(channel_stats.data_ptr<double>(), sources, channels);
    return;
  }
  const auto [batch_mean, batch_var] = batch.tensors(channels);
  const torch::Tensor* sources[4] = {&batch_mean, &batch_var, &running_mean, &running_var};
  for (int k = 0; k < 4; ++k) {
    auto part = channel_stats.narrow(0, k * channels, channels);
    if (sources[k]->defined()) {
      part.copy_(*sources[k]);
    } else {
      part.fill_(nan);
    }
  }
}

// batch_norm_drift_stats (see batch_norm.h), with the batch pair as BatchMoments.
void fill_drift_stats(const torch::Tensor& stats, const torch::Tensor& channel_stats, const BatchMoments& batch,
                      const torch::Tensor& running_mean, const torch::Tensor& running_var, double eps,
                      int64_t channels, int64_t count) {
  namespace slot = nn::batch_norm_stat;
  torch::NoGradGuard no_grad;
  const double nan = std::nan("");
  const bool have_batch = batch.defined();
  const bool have_running = running_mean.defined();
  if (channel_stats.defined()) check_channel_stats(channel_stats, channels);
  if (stats.device().is_cpu() && (!channel_stats.defined() || channel_stats.device().is_cpu()) &&
      batch.readable_on_host() && cpu_vector(running_mean) && cpu_vector(running_var)) {
    const DoubleView sources[4] = {batch.mean_view(), batch.var_view(), DoubleView(running_mean),
                                   DoubleView(running_var)};
    host_drift_stats(stats, channel_stats, sources, eps, channels, count);
    return;
  }
  if (channel_stats.defined()) {
    write_channel_stats(channel_stats, batch, running_mean, running_var, channels);
    stats[slot::kChannels].fill_(static_cast<double>(channels));
    stats[slot::kValuesPerChannel].fill_(static_cast<double>(count));
    return;
  }
  const auto [batch_mean, batch_var] = batch.tensors(channels);
  // Other devices: a few device ops, no host sync.
  stats[slot::kChannels].fill_(static_cast<double>(channels));
  stats[slot::kValuesPerChannel].fill_(static_cast<double>(count));
  auto put_mean = [&](int64_t index, const torch::Tensor& t, bool ok) {
    if (ok) {
      stats[index].copy_(t.to(torch::kDouble).mean());
    } else {
      stats[index].fill_(nan);
    }
  };
  put_mean(slot::kBatchMeanAvg, batch_mean, have_batch);
  put_mean(slot::kBatchVarAvg, batch_var, have_batch);
  put_mean(slot::kRunningMeanAvg, running_mean, have_running);
  put_mean(slot::kRunningVarAvg, running_var, have_running);
  if (have_batch && have_running) {
    auto rvar = running_var.to(torch::kDouble);
    stats[slot::kMeanDrift].copy_(
        ((batch_mean.to(torch::kDouble) - running_mean.to(torch::kDouble)).abs() / (rvar + eps).sqrt()).mean());
    stats[slot::kVarDrift].copy_((batch_var.to(torch::kDouble) / rvar).log().abs().mean());
  } else {
    stats.slice(0, slot::kMeanDrift, slot::kVarDrift + 1).fill_(nan);
  }
}

}  // namespace

void batch_norm_drift_stats(const torch::Tensor& stats, const torch::Tensor& channel_stats,
                            const torch::Tensor& batch_mean, const torch::Tensor& batch_var,
                            const torch::Tensor& running_mean, const torch::Tensor& running_var, double eps,
                            int64_t channels, int64_t count) {
  fill_drift_stats(stats, channel_stats, BatchMoments{batch_mean, batch_var}, running_mean, running_var, eps,
                   channels, count);
}

void batch_norm_channel_stats(const torch::Tensor& channel_stats, const torch::Tensor& batch_mean,
                              const torch::Tensor& batch_var, const torch::Tensor& running_mean,
                              const torch::Tensor& running_var, int64_t channels) {
  write_channel_stats(channel_stats, BatchMoments{batch_mean, batch_var}, running_mean, running_var, channels);
}

void batch_norm_channel_stats(const torch::Tensor& channel_stats, const double* batch_mean, const double* batch_var,
                              const torch::Tensor& running_mean, const torch::Tensor& running_var, int64_t channels) {
  write_channel_stats(channel_stats, BatchMoments{{}, {}, batch_mean, batch_var}, running_mean, running_var,
                      channels);
}

void batch_norm_output_stats(const torch::Tensor& stats, const torch::Tensor& output) {
  namespace slot = nn::batch_norm_stat;
  sum_squares_and_nonfinite(output, stats, slot::kOutputSumSq, slot::kNonFiniteOutput);
}

namespace cpu {
KernelStub<BatchNormForwardTrainFn> batch_norm_forward_train_stub;
KernelStub<BatchNormTransformFn> batch_norm_transform_stub;
KernelStub<BatchNormStatsFn> batch_norm_stats_stub;
KernelStub<BatchNormBackwardFn> batch_norm_backward_stub;
}  // namespace cpu

namespace detail {

// The kernels' view of `t`: channel-major for contiguous (N, C, inner > 1),
// channel-minor for (N, C) and channels-last; nullopt otherwise.
c10::optional<cpu::BatchNormLayout> kernel_layout(const torch::Tensor& t) {
  cpu::BatchNormLayout L;
  L.channels = t.size(1);
  int64_t spatial = 1;
  for (int64_t d = 2; d < t.dim(); ++d) spatial *= t.size(d);
  if (t.is_contiguous()) {
    if (spatial == 1) {
      L.channel_minor = true;
      L.outer = t.size(0);
    } else {
      L.outer = t.size(0);
      L.inner = spatial;
    }
    return L;
  }
  const bool channels_last = (t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast)) ||
                             (t.dim() == 5 && t.is_contiguous(at::MemoryFormat::ChannelsLast3d));
  if (channels_last) {
    L.channel_minor = true;
    L.outer = t.size(0) * spatial;
    return L;
  }
  return c10::nullopt;
}

// A per-channel vector as doubles: read in place on CPU (no tensor op: this is
// on every step's path), converted otherwise.
std::vector<double> to_doubles(const torch::Tensor& t) {
  if (t.device().is_cpu() && t.is_contiguous()) {
    if (t.scalar_type() == torch::kDouble) return {t.data_ptr<double>(), t.data_ptr<double>() + t.numel()};
    if (t.scalar_type() == torch::kFloat) return {t.data_ptr<float>(), t.data_ptr<float>() + t.numel()};
  }
  auto d = t.to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

torch::Tensor from_doubles(const std::vector<double>& v, torch::ScalarType dtype) {
  auto t = torch::empty({static_cast<int64_t>(v.size())}, torch::TensorOptions().dtype(dtype));
  if (dtype == torch::kDouble) {
    std::copy(v.begin(), v.end(), t.data_ptr<double>());
  } else {
    std::transform(v.begin(), v.end(), t.data_ptr<float>(), [](double d) { return static_cast<float>(d); });
  }
  return t;
}

// running ← (1 − m)·running + m·value, in double, on a CPU float/double vector.
void blend_into(const torch::Tensor& running, const std::vector<double>& value, double m, double scale) {
  const int64_t c = running.numel();
  if (running.scalar_type() == torch::kDouble) {
    double* r = running.data_ptr<double>();
    for (int64_t k = 0; k < c; ++k) r[k] = (1.0 - m) * r[k] + m * value[static_cast<size_t>(k)] * scale;
  } else {
    float* r = running.data_ptr<float>();
    for (int64_t k = 0; k < c; ++k) {
      r[k] = static_cast<float>((1.0 - m) * static_cast<double>(r[k]) + m * value[static_cast<size_t>(k)] * scale);
    }
  }
}

// Counts NaN/Inf in a dense tensor: the rare path behind a non-finite Σ.
double count_nonfinite(const torch::Tensor& t) { return t.isfinite().logical_not().sum().item<double>(); }

void update_running_stats_cpu(const torch::Tensor& running_mean, const torch::Tensor& running_var,
                               const std::vector<double>& mean, const std::vector<double>& var, int64_t count,
                               double momentum) {
  if (!running_mean.defined() || count <= 0) return;
  // Bessel's correction M/(M − 1) for the running (unbiased) variance.
  const double unbias = count > 1 ? static_cast<double>(count) / static_cast<double>(count - 1) : std::nan("");
  blend_into(running_mean, mean, momentum, 1.0);
  blend_into(running_var, var, momentum, unbias);
}

}  // namespace detail

using detail::blend_into;
using detail::count_nonfinite;
using detail::from_doubles;
using detail::kernel_layout;
using detail::to_doubles;

bool cpu_kernels_apply(const torch::Tensor& input) {
  return input.device().is_cpu() && (input.scalar_type() == torch::kFloat || input.scalar_type() == torch::kDouble) &&
         input.dim() >= 2 && cpu::batch_norm_forward_train_stub.get() != nullptr;
}

CpuForward batch_norm_forward_cpu(const torch::Tensor& input_in, const torch::Tensor& weight,
                                  const torch::Tensor& bias, const torch::Tensor& running_mean,
                                  const torch::Tensor& running_var, bool training, double momentum,
                                  double eps, const torch::Tensor& stats,
                                  const torch::Tensor& channel_stats) {
  namespace slot = nn::batch_norm_stat;
  auto layout = kernel_layout(input_in);
  const torch::Tensor input = layout.has_value() ? input_in : input_in.contiguous();
  if (!layout.has_value()) layout = kernel_layout(input);
  const int64_t C = input.size(1);
  const int64_t count = values_per_channel(input);
  const auto sdt = stats_dtype(input.scalar_type());
  CpuForward out;
  out.output = torch::empty_like(input);
  const torch::Tensor w = weight.defined() ? weight.contiguous() : weight;
  const torch::Tensor b = bias.defined() ? bias.contiguous() : bias;
  double sum_y2 = 0;
  double* want_y2 = stats.defined() ? &sum_y2 : nullptr;
  std::vector<double> mean(static_cast<size_t>(C)), var(static_cast<size_t>(C)), invstd(static_cast<size_t>(C));
  if (training) {
    cpu::batch_norm_forward_train_stub.get()(input, out.output, *layout, w, b, eps, mean.data(), var.data(), want_y2);
    if (stats.defined()) {
      // Against the statistics eval mode would have used: before the update.
      fill_drift_stats(stats, channel_stats, BatchMoments{{}, {}, mean.data(), var.data()}, running_mean, running_var,
                       eps, C, count);
    }
    detail::update_running_stats_cpu(running_mean, running_var, mean, var, count, momentum);
    for (int64_t c = 0; c < C; ++c) invstd[static_cast<size_t>(c)] = 1.0 / std::sqrt(var[static_cast<size_t>(c)] + eps);
  } else {
    mean = to_doubles(running_mean);
    const auto rv = to_doubles(running_var);
    std::vector<double> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C), 0.0);
    const auto wd = w.defined() ? to_doubles(w) : std::vector<double>();
    const auto bd = b.defined() ? to_doubles(b) : std::vector<double>();
    for (int64_t c = 0; c < C; ++c) {
      const auto k = static_cast<size_t>(c);
      invstd[k] = 1.0 / std::sqrt(rv[k] + eps);
      scale[k] = invstd[k] * (w.defined() ? wd[k] : 1.0);
      if (b.defined()) shift[k] = bd[k];
    }
    if (stats.defined()) {
      batch_norm_drift_stats(stats, channel_stats, torch::Tensor(), torch::Tensor(), running_mean, running_var, eps,
                             C, count);
    }
    cpu::batch_norm_transform_stub.get()(input, out.output, *layout, mean.data(), scale.data(), shift.data(), want_y2);
  }
  if (stats.defined()) {
    auto* s = stats.data_ptr<double>();
    s[slot::kOutputSumSq] = sum_y2;
    s[slot::kNonFiniteOutput] = std::isfinite(sum_y2) ? 0.0 : count_nonfinite(out.output);
  }
  out.mean = from_doubles(mean, sdt);
  out.invstd = from_doubles(invstd, sdt);
  return out;
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> batch_norm_backward_cpu(
    const torch::Tensor& grad_output, const torch::Tensor& input_in, const torch::Tensor& mean,
    const torch::Tensor& invstd, const torch::Tensor& weight, bool training, bool need_input,
    const torch::Tensor& stats) {
  namespace slot = nn::batch_norm_stat;
  auto layout = kernel_layout(input_in);
  const torch::Tensor input = layout.has_value() ? input_in : input_in.contiguous();
  if (!layout.has_value()) layout = kernel_layout(input);
  const bool same = grad_output.sizes() == input.sizes() && grad_output.strides() == input.strides() &&
                    grad_output.scalar_type() == input.scalar_type();
  const torch::Tensor g = same ? grad_output : torch::empty_like(input).copy_(grad_output);
  const int64_t C = input.size(1);
  const auto mean_d = to_doubles(mean);
  const auto invstd_d = to_doubles(invstd);
  const auto weight_d = weight.defined() ? to_doubles(weight) : std::vector<double>();
  std::vector<double> sum_dy(static_cast<size_t>(C)), sum_dy_xmu(static_cast<size_t>(C));
  double g2 = 0, dx2 = 0;
  cpu::BatchNormBackwardArgs args;
  args.mean = mean_d.data();
  args.invstd = invstd_d.data();
  args.weight = weight.defined() ? weight_d.data() : nullptr;
  args.count = static_cast<double>(values_per_channel(input));
  args.eval = !training;
  args.sum_dy = sum_dy.data();
  args.sum_dy_xmu = sum_dy_xmu.data();
  args.sum_g2 = stats.defined() ? &g2 : nullptr;
  args.sum_dx2 = stats.defined() ? &dx2 : nullptr;
  torch::Tensor grad_input = need_input ? torch::empty_like(input) : torch::Tensor();
  cpu::batch_norm_backward_stub.get()(g, input, grad_input, *layout, args);
  std::vector<double> grad_weight(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    grad_weight[static_cast<size_t>(c)] = sum_dy_xmu[static_cast<size_t>(c)] * invstd_d[static_cast<size_t>(c)];
  }
  if (stats.defined()) {
    auto* s = stats.data_ptr<double>();
    s[slot::kGradOutputSumSq] = g2;
    s[slot::kGradInputSumSq] = need_input ? dx2 : std::nan("");
    s[slot::kNonFiniteGradInput] =
        !need_input ? 0.0 : std::isfinite(dx2) ? 0.0 : count_nonfinite(grad_input);
  }
  return {grad_input, from_doubles(grad_weight, input.scalar_type()), from_doubles(sum_dy, input.scalar_type())};
}

}  // namespace bnlab::kernels
