#include "bnlab/train/recorder.h"

#include "bnlab/nn/modules/activation.h"
#include "bnlab/nn/modules/batch_norm.h"
#include "bnlab/nn/modules/batch_norm_act.h"
#include "bnlab/nn/probe.h"
#include "kernels/batch_norm_drift.h"
#include "kernels/reduce.h"

#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/torch.h>

#include <spdlog/spdlog.h>

#if defined(__linux__)
#include <pthread.h>
#endif

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace bnlab::train {

namespace {

namespace act = nn::activation_stat;
namespace bns = nn::batch_norm_stat;
namespace ps = kernels::param_stat;

using Clock = std::chrono::steady_clock;

// "torch::nn::LinearImpl" → "Linear".
std::string short_type(const std::string& name) {
  std::string s = name.substr(name.rfind(':') == std::string::npos ? 0 : name.rfind(':') + 1);
  if (s.size() > 4 && s.compare(s.size() - 4, 4, "Impl") == 0) s.resize(s.size() - 4);
  return s;
}

double zero_if_nan(double v) { return std::isnan(v) ? 0.0 : v; }

// Unbiased standard deviation from n, Σv and Σv².
double std_from_sums(double n, double sum, double sum_sq) {
  if (!(n > 1)) return kNotMeasured;
  const double var = (sum_sq - sum * sum / n) / (n - 1);
  return std::sqrt(std::max(var, 0.0));
}

struct ParamSlot {
  std::string name;        // "weight", "bias" or another parameter name
  torch::Tensor param;
  torch::Tensor snapshot;  // θ at the previous end_step (or begin of the first step)
  // Whether `snapshot` is θ as of the previous end_step: not after a step
  // whose statistics the optimizer reported (it did not touch the snapshot).
  bool snapshot_current = true;
  torch::Tensor row;       // param_stat slots in the buffer
  int64_t offset = 0;
  int64_t numel = 0;
};

struct LayerSlot {
  LayerInfo info;
  std::shared_ptr<torch::nn::Module> module;
  nn::Probeable* probeable = nullptr;      // activation or BatchNorm
  nn::ActivationLayer* activation = nullptr;
  std::shared_ptr<nn::LayerProbe> probe;
  int64_t stats_offset = -1;  // its probe row in the buffer
  int64_t sample_offset = -1; // its sample in the sample buffer
  int64_t channel_offset = -1;  // BatchNorm or BatchNormAct: its 4·C per-channel statistics in the buffer
  int64_t channels = 0;
  double eps = 0.0;
  double max_local_derivative = 1.0;
  bool can_saturate = true;
  std::vector<ParamSlot> params;
  int64_t graph_order = std::numeric_limits<int64_t>::max();  // from the autograd graph
  int64_t forward_rank = std::numeric_limits<int64_t>::max();  // fixed at the first step
};

// One step's statistics on the model's device: every probe row, parameter
// row and sample of the step, with a view per layer prepared once. Steps
// alternate between pooled buffers, so the training thread never copies one:
// it hands the whole buffer to the writer and takes a free one.
struct StatsBuffer {
  torch::Tensor buffer;   // float64
  torch::Tensor samples;  // float32 activation input samples
  std::vector<torch::Tensor> stats_views;    // per layer (undefined if none)
  std::vector<torch::Tensor> sample_views;   // per layer
  std::vector<torch::Tensor> channel_views;  // per layer (BatchNorm)
  std::vector<torch::Tensor> param_rows;     // per parameter, in layer order
  std::vector<double*> param_row_pointers;   // the same rows, for the optimizer (CPU buffers only)
};

// What the training thread hands the writer for one step.
struct RawStep {
  int64_t step = 0;
  double lr = kNotMeasured;
  int64_t batch_size = 0;
  double step_time_s = kNotMeasured;
  double val_loss = kNotMeasured;
  double val_accuracy = kNotMeasured;
  std::unique_ptr<StatsBuffer> stats;
  std::vector<int64_t> order_keys;  // per layer; max() when unknown
  std::vector<bool> ran;            // per layer: its forward ran this step
  std::vector<bool> has_grad;       // per parameter slot, flattened in layer order
  // Histogram steps: the tensors each probed layer captured (input, output,
  // grad_output, grad_input), binned by the writer.
  std::vector<std::array<torch::Tensor, 4>> captures;
  // The loss: read at end_step where that costs no device sync (a host
  // scalar), otherwise kept for the writer to read.
  double loss_value = kNotMeasured;
  torch::Tensor loss;
};

}  // namespace

struct Recorder::Impl {
  RecorderOptions options;
  std::shared_ptr<torch::nn::Module> model;
  std::vector<LayerSlot> layers;
  std::vector<LayerInfo> infos;
  std::vector<kernels::ParameterStatsRequest> requests;  // reused every step
  std::vector<size_t> unmeasured_updates;  // parameter rows whose Δθ is not known this step
  // Rows a bnlab fused optimizer fills during its step (nullptr: none).
  std::shared_ptr<optim::UpdateStatistics> update_statistics;
  torch::Device device = torch::kCPU;
  int64_t buffer_size = 0;
  int64_t sample_size = 0;
  std::unique_ptr<StatsBuffer> current;  // the buffer of the step in progress
  std::vector<std::shared_ptr<MetricsSink>> sinks;
  AlertMonitor monitor;

  // current step
  int64_t step = -1;
  bool in_step = false;
  bool snapshots_ready = false;
  bool order_known = false;
  bool histogram_step = false;
  double val_loss = kNotMeasured;
  double val_accuracy = kNotMeasured;
  Clock::time_point step_start;

  // Writer thread. The training thread never wakes it (a futex wake costs tens
  // of microseconds in a VM): the writer polls every kWriterPoll, and flush()
  // and close() wake it explicitly. The writer wakes the training thread only
  // when it waits (back-pressure or flush).
  static constexpr std::chrono::milliseconds kWriterPoll{2};
  std::mutex mutex;
  std::condition_variable writer_cv;
  std::condition_variable main_cv;
  std::deque<RawStep> queue;
  std::vector<RawStep> pool;  // processed steps, their vectors kept for reuse
  std::vector<std::unique_ptr<StatsBuffer>> free_buffers;
  size_t max_queue = 64;
  bool stopping = false;
  bool flush_requested = false;
  bool main_waiting = false;
  bool closed = false;
  size_t busy = 0;
  std::exception_ptr error;
  std::thread writer;
  std::vector<Alert> alerts;
  StepMetrics last;

  explicit Impl(RecorderOptions opts) : options(std::move(opts)), monitor(options.alerts()) {}

  void discover();
  void allocate();
  std::unique_ptr<StatsBuffer> new_buffer() const;
  std::unique_ptr<StatsBuffer> take_buffer();
  void attach(const StatsBuffer& b);
  void compute_graph_order(const torch::Tensor& loss);
  std::vector<Histogram> histograms(const RawStep& raw) const;
  StepMetrics derive(const RawStep& raw) const;
  void process(const RawStep& raw);
  RawStep take_raw();
  void writer_loop();
  void rethrow_error();
};

void Recorder::Impl::discover() {
  const auto modules = model->named_modules(options.root_name(), /*include_self=*/true);
  for (const auto& item : modules) {
    const auto& module = item.value();
    LayerSlot slot;
    slot.module = module;
    slot.info.name = item.key();
    slot.info.type = short_type(module->name());
    if (auto* a = dynamic_cast<nn::ActivationLayer*>(module.get())) {
      slot.info.kind = LayerKind::kActivation;
      slot.activation = a;
      slot.probeable = a;
      slot.max_local_derivative = a->max_local_derivative();
      slot.can_saturate = a->can_saturate();
      // A fused BatchNorm + elementwise activation also reports its BatchNorm's
      // drift, from the per-channel statistics its forward copies (Maxout runs
      // as a separate BatchNorm without a probe, so it has none).
      if (auto* fused = dynamic_cast<nn::BatchNormActImpl*>(module.get());
          fused != nullptr && fused->elementwise_params().has_value()) {
        slot.channels = fused->options.num_features();
        slot.eps = fused->options.eps();
      }
    } else if (auto* b = dynamic_cast<nn::BatchNormLayer*>(module.get())) {
      slot.info.kind = LayerKind::kBatchNorm;
      slot.probeable = b;
      slot.channels = b->batch_norm_options().num_features();
      slot.eps = b->batch_norm_options().eps();
    } else {
      slot.info.kind = LayerKind::kParameters;
    }
    for (const auto& p : module->named_parameters(/*recurse=*/false)) {
      if (!p.value().defined()) continue;
      ParamSlot ps_slot;
      ps_slot.name = p.key();
      ps_slot.param = p.value();
      ps_slot.numel = p.value().numel();
      slot.params.push_back(std::move(ps_slot));
    }
    if (slot.info.kind == LayerKind::kParameters && slot.params.empty()) continue;
    if (slot.probeable != nullptr && slot.probeable->probe() != nullptr) {
      throw std::runtime_error("bnlab::train::Recorder: layer " + slot.info.name +
                               " already has a probe attached (another Recorder on this model?)");
    }
    layers.push_back(std::move(slot));
  }
  for (const auto& l : layers) infos.push_back(l.info);
}

void Recorder::Impl::allocate() {
  for (const auto& p : model->parameters()) {
    device = p.device();
    break;
  }
  int64_t offset = 0;
  int64_t sample_offset = 0;
  for (auto& l : layers) {
    if (l.info.kind == LayerKind::kActivation) {
      l.stats_offset = offset;
      offset += act::kCount;
      if (options.percentile_sample() > 0) {
        l.sample_offset = sample_offset;
        sample_offset += options.percentile_sample();
      }
      if (l.channels > 0) {
        l.channel_offset = offset;
        offset += 4 * l.channels;
      }
    } else if (l.info.kind == LayerKind::kBatchNorm) {
      l.stats_offset = offset;
      offset += bns::kCount;
      l.channel_offset = offset;
      offset += 4 * l.channels;
    }
    for (auto& p : l.params) {
      TORCH_CHECK(p.param.device() == device, "bnlab::train::Recorder: expected every parameter on ",
                  device, ", got ", l.info.name, ".", p.name, " on ", p.param.device());
      p.offset = offset;
      offset += ps::kCount;
    }
  }
  buffer_size = std::max<int64_t>(offset, 1);
  sample_size = std::max<int64_t>(sample_offset, 1);
  for (auto& l : layers) {
    if (l.probeable != nullptr) {
      l.probe = std::make_shared<nn::LayerProbe>();
      l.probeable->set_probe(l.probe);
    }
    for (auto& p : l.params) {
      p.snapshot = torch::empty_like(p.param, torch::MemoryFormat::Contiguous).requires_grad_(false);
    }
  }
}

std::unique_ptr<StatsBuffer> Recorder::Impl::new_buffer() const {
  auto b = std::make_unique<StatsBuffer>();
  b->buffer = torch::full({buffer_size}, kNotMeasured, torch::TensorOptions().dtype(torch::kDouble).device(device));
  b->samples = torch::zeros({sample_size}, torch::TensorOptions().dtype(torch::kFloat).device(device));
  for (const auto& l : layers) {
    const int64_t count = l.info.kind == LayerKind::kActivation ? int64_t{act::kCount} : int64_t{bns::kCount};
    b->stats_views.push_back(l.stats_offset >= 0 ? b->buffer.narrow(0, l.stats_offset, count) : torch::Tensor());
    b->sample_views.push_back(l.sample_offset >= 0
                                  ? b->samples.narrow(0, l.sample_offset, options.percentile_sample())
                                  : torch::Tensor());
    b->channel_views.push_back(l.channel_offset >= 0 ? b->buffer.narrow(0, l.channel_offset, 4 * l.channels)
                                                     : torch::Tensor());
    for (const auto& p : l.params) {
      b->param_rows.push_back(b->buffer.narrow(0, p.offset, ps::kCount));
      if (device.is_cpu()) b->param_row_pointers.push_back(b->param_rows.back().data_ptr<double>());
    }
  }
  return b;
}

std::unique_ptr<StatsBuffer> Recorder::Impl::take_buffer() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!free_buffers.empty()) {
      auto b = std::move(free_buffers.back());
      free_buffers.pop_back();
      return b;
    }
  }
  return new_buffer();
}

// Points the probes at a buffer's views (handles only: no tensor ops).
void Recorder::Impl::attach(const StatsBuffer& b) {
  for (size_t i = 0; i < layers.size(); ++i) {
    auto& probe = layers[i].probe;
    if (!probe) continue;
    probe->stats = b.stats_views[i];
    probe->sample = b.sample_views[i];
    probe->channel_stats = b.channel_views[i];
  }
}

// Orders parameter layers by when their parameters were first used in the
// forward pass: the autograd sequence number of the op that consumed them.
void Recorder::Impl::compute_graph_order(const torch::Tensor& loss) {
  order_known = true;
  if (!loss.defined() || !loss.grad_fn()) return;
  std::unordered_map<const c10::TensorImpl*, size_t> owner;
  for (size_t i = 0; i < layers.size(); ++i) {
    for (const auto& p : layers[i].params) owner[p.param.unsafeGetTensorImpl()] = i;
  }
  std::vector<torch::autograd::Node*> stack{loss.grad_fn().get()};
  std::unordered_set<torch::autograd::Node*> seen{loss.grad_fn().get()};
  while (!stack.empty()) {
    auto* node = stack.back();
    stack.pop_back();
    for (const auto& edge : node->next_edges()) {
      auto* next = edge.function.get();
      if (next == nullptr) continue;
      if (auto* acc = dynamic_cast<torch::autograd::AccumulateGrad*>(next)) {
        auto it = owner.find(acc->variable.unsafeGetTensorImpl());
        if (it != owner.end()) {
          auto& order = layers[it->second].graph_order;
          order = std::min<int64_t>(order, static_cast<int64_t>(node->sequence_nr()));
        }
      }
      if (seen.insert(next).second) stack.push_back(next);
    }
  }
}

namespace {

// A fixed-bin histogram of the finite values of `t` over [lo, hi] (values
// outside go to the end bins), with its summary; raw loops over a host copy.
Histogram bin_values(const torch::Tensor& t, int64_t bins, c10::optional<std::pair<double, double>> range) {
  Histogram h;
  const auto host = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const double* v = host.data_ptr<double>();
  const int64_t n = host.numel();
  double lo = std::numeric_limits<double>::infinity();
  double hi = -lo;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) continue;
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
    h.num += 1;
    h.sum += v[i];
    h.sum_squares += v[i] * v[i];
  }
  if (h.num == 0) return h;
  h.min = lo;
  h.max = hi;
  if (range) std::tie(lo, hi) = *range;
  if (!(hi > lo)) {
    lo -= 0.5;
    hi += 0.5;
  }
  h.edges.resize(static_cast<size_t>(bins + 1));
  for (int64_t i = 0; i <= bins; ++i) h.edges[static_cast<size_t>(i)] = lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(bins);
  h.counts.assign(static_cast<size_t>(bins), 0.0);
  const double scale = static_cast<double>(bins) / (hi - lo);
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) continue;
    // torch.histc's binning: floor((x − lo)·bins/(hi − lo)), the top edge in the last bin.
    auto bin = static_cast<int64_t>((std::clamp(v[i], lo, hi) - lo) * scale);
    h.counts[static_cast<size_t>(std::clamp<int64_t>(bin, 0, bins - 1))] += 1;
  }
  return h;
}

}  // namespace

std::vector<Histogram> Recorder::Impl::histograms(const RawStep& raw) const {
  std::vector<Histogram> out;
  const int64_t bins = std::max<int64_t>(1, options.histogram_bins());
  static const char* kQuantities[4] = {"input", "output", "grad_output", "grad_input"};
  for (size_t i = 0; i < raw.captures.size() && i < layers.size(); ++i) {
    const auto& l = layers[i];
    for (int q = 0; q < 4; ++q) {
      const auto& t = raw.captures[i][static_cast<size_t>(q)];
      if (!t.defined() || t.numel() == 0) continue;
      // Bounded outputs get their fixed range, so the saturation peaks sit at its ends.
      c10::optional<std::pair<double, double>> range;
      if (q == 1 && l.activation != nullptr) range = l.activation->output_bounds();
      Histogram h = bin_values(t, bins, range);
      if (h.counts.empty()) continue;
      h.layer = l.info.name;
      h.quantity = kQuantities[q];
      out.push_back(std::move(h));
    }
  }
  return out;
}

StepMetrics Recorder::Impl::derive(const RawStep& raw) const {
  // The writer reads the step's buffer directly (CPU), or copies it to the
  // host (other devices: the copy waits for the step's kernels on the stream).
  const torch::Tensor host = raw.stats->buffer.device().is_cpu() ? raw.stats->buffer
                                                                  : raw.stats->buffer.to(torch::kCPU);
  const torch::Tensor host_samples = raw.stats->samples.device().is_cpu() ? raw.stats->samples
                                                                          : raw.stats->samples.to(torch::kCPU);
  const double* stats = host.data_ptr<double>();
  const float* samples = host_samples.data_ptr<float>();
  StepMetrics m;
  m.step = raw.step;
  m.loss = raw.loss.defined() ? raw.loss.item<double>() : raw.loss_value;
  m.lr = raw.lr;
  m.step_time_s = raw.step_time_s;
  m.examples_per_s = raw.step_time_s > 0 ? static_cast<double>(raw.batch_size) / raw.step_time_s : kNotMeasured;
  m.val_loss = raw.val_loss;
  m.val_accuracy = raw.val_accuracy;
  m.histograms = histograms(raw);
  double grad_sq_total = 0.0;
  bool any_grad = false;
  size_t param_index = 0;
  std::vector<std::pair<int64_t, size_t>> keyed;
  std::vector<LayerMetrics> unordered;
  for (size_t li = 0; li < layers.size(); ++li) {
    const auto& l = layers[li];
    LayerMetrics out;
    out.name = l.info.name;
    out.type = l.info.type;
    out.kind = l.info.kind;
    const double* s = l.stats_offset >= 0 ? stats + l.stats_offset : nullptr;
    const bool ran = raw.ran[li];
    if (l.info.kind == LayerKind::kActivation && ran) {
      const double n_in = s[act::kInputCount];
      const double n_out = s[act::kOutputCount];
      if (n_in > 0) {
        out.saturation_pct = l.can_saturate ? 100.0 * s[act::kSaturated] / n_out : 0.0;
        out.dead_pct = l.can_saturate ? 100.0 * s[act::kDeadUnits] / s[act::kUnits] : 0.0;
        out.input_mean = s[act::kInputSum] / n_in;
        out.input_std = std_from_sums(n_in, s[act::kInputSum], s[act::kInputSumSq]);
        out.output_mean = s[act::kOutputSum] / n_out;
        out.output_std = std_from_sums(n_out, s[act::kOutputSum], s[act::kOutputSumSq]);
        out.grad_pass_through = s[act::kDerivativeSum] / (n_out * l.max_local_derivative);
        if (l.sample_offset >= 0) {
          const auto count = static_cast<int64_t>(zero_if_nan(s[act::kSampleCount]));
          const auto q = nn::sample_quantiles(samples + l.sample_offset, count, {0.15, 0.50, 0.85});
          out.input_p15 = q[0];
          out.input_p50 = q[1];
          out.input_p85 = q[2];
        }
      }
      out.grad_output_norm = std::sqrt(s[act::kGradOutputSumSq]);
      out.grad_input_norm = std::sqrt(s[act::kGradInputSumSq]);
      out.nonfinite_forward = zero_if_nan(s[act::kNonFiniteOutput]);
      out.nonfinite_grad = zero_if_nan(s[act::kNonFiniteGradInput]);
    } else if (l.info.kind == LayerKind::kBatchNorm && ran) {
      out.grad_output_norm = std::sqrt(s[bns::kGradOutputSumSq]);
      out.grad_input_norm = std::sqrt(s[bns::kGradInputSumSq]);
      out.nonfinite_forward = zero_if_nan(s[bns::kNonFiniteOutput]);
      out.nonfinite_grad = zero_if_nan(s[bns::kNonFiniteGradInput]);
    }
    if (l.channel_offset >= 0 && ran) {
      // Channel averages and drift, from the per-channel values the forward
      // copied (BatchNorm, or BatchNormAct's BatchNorm part). Missing
      // statistics were copied as NaN (eval: no batch statistics), so they come out NaN.
      const int64_t c = l.channels;
      const double* ch = stats + l.channel_offset;
      const kernels::DriftSummary drift =
          kernels::summarize_drift(ch, ch + c, ch + 2 * c, ch + 3 * c, true, true, c, l.eps);
      out.bn_batch_mean = drift.batch_mean;
      out.bn_batch_var = drift.batch_var;
      out.bn_running_mean = drift.running_mean;
      out.bn_running_var = drift.running_var;
      out.bn_mean_drift = drift.mean_drift;
      out.bn_var_drift = drift.var_drift;
    }
    for (const auto& p : l.params) {
      const double* r = stats + p.offset;
      const bool has_grad = raw.has_grad[param_index++];
      const auto n = static_cast<double>(p.numel);
      ParamMetrics pm;
      pm.norm = std::sqrt(r[ps::kSumSq]);
      const double std_theta = std_from_sums(n, r[ps::kSum], r[ps::kSumSq]);
      pm.update_to_data = std_from_sums(n, r[ps::kDeltaSum], r[ps::kDeltaSumSq]) / std_theta;
      if (has_grad) {
        pm.grad_norm = std::sqrt(r[ps::kGradSumSq]);
        pm.grad_to_data = std_from_sums(n, r[ps::kGradSum], r[ps::kGradSumSq]) / std_theta;
        grad_sq_total += r[ps::kGradSumSq];
        any_grad = true;
      }
      out.nonfinite_forward += zero_if_nan(r[ps::kNonFiniteParam]);
      if (has_grad) out.nonfinite_grad += zero_if_nan(r[ps::kNonFiniteGrad]);
      if (p.name == "weight") {
        out.weight = pm;
      } else if (p.name == "bias") {
        out.bias = pm;
      } else {
        // Other parameters get a row of their own, reported in the weight columns.
        LayerMetrics extra;
        extra.name = l.info.name + ":" + p.name;
        extra.type = l.info.type;
        extra.kind = LayerKind::kParameters;
        extra.weight = pm;
        keyed.emplace_back(raw.order_keys[li], unordered.size());
        unordered.push_back(std::move(extra));
      }
    }
    keyed.emplace_back(raw.order_keys[li], unordered.size());
    unordered.push_back(std::move(out));
  }
  m.grad_norm = any_grad ? std::sqrt(grad_sq_total) : kNotMeasured;
  // Forward order: by autograd sequence number; layers not seen keep discovery order, last.
  std::stable_sort(keyed.begin(), keyed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  m.layers.reserve(keyed.size());
  for (size_t i = 0; i < keyed.size(); ++i) {
    auto layer = std::move(unordered[keyed[i].second]);
    layer.forward_order = static_cast<int64_t>(i);
    m.layers.push_back(std::move(layer));
  }
  return m;
}

void Recorder::Impl::process(const RawStep& raw) {
  StepMetrics m = derive(raw);
  auto raised = monitor.observe(m);
  for (auto& sink : sinks) sink->write(m);
  std::lock_guard<std::mutex> lock(mutex);
  alerts.insert(alerts.end(), raised.begin(), raised.end());
  last = std::move(m);
}

RawStep Recorder::Impl::take_raw() {
  RawStep raw;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!pool.empty()) {
      raw = std::move(pool.back());
      pool.pop_back();
    }
  }
  raw.has_grad.clear();
  raw.ran.clear();
  raw.order_keys.clear();
  raw.captures.clear();
  raw.loss = torch::Tensor();
  raw.loss_value = kNotMeasured;
  return raw;
}

void Recorder::Impl::writer_loop() {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), "bnlab-writer");  // in top, gdb and perf; bnlab-bench finds it by name
#endif
  for (;;) {
    RawStep raw;
    {
      std::unique_lock<std::mutex> lock(mutex);
      writer_cv.wait_for(lock, kWriterPoll, [&] { return stopping || flush_requested || !queue.empty(); });
      if (queue.empty()) {
        if (stopping) return;
        continue;
      }
      raw = std::move(queue.front());
      queue.pop_front();
      ++busy;
    }
    try {
      if (!error) process(raw);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!error) error = std::current_exception();
    }
    bool wake_main = false;
    {
      std::lock_guard<std::mutex> lock(mutex);
      --busy;
      if (raw.stats) free_buffers.push_back(std::move(raw.stats));
      pool.push_back(std::move(raw));
      wake_main = main_waiting;
    }
    if (wake_main) main_cv.notify_all();
  }
}

void Recorder::Impl::rethrow_error() {
  std::exception_ptr e;
  {
    std::lock_guard<std::mutex> lock(mutex);
    e = error;
  }
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    throw std::runtime_error(std::string("bnlab::train::Recorder: writing metrics failed: ") + ex.what());
  }
}

Recorder::Recorder(std::shared_ptr<torch::nn::Module> model, RecorderOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {
  TORCH_CHECK(model != nullptr, "bnlab::train::Recorder: expected a model, got nullptr");
  TORCH_CHECK(impl_->options.percentile_sample() >= 0,
              "bnlab::train::Recorder: expected percentile_sample >= 0 (0: no percentiles), got ",
              impl_->options.percentile_sample());
  impl_->model = std::move(model);
  impl_->discover();
  impl_->allocate();
  if (impl_->options.background_writer()) {
    impl_->writer = std::thread([this] { impl_->writer_loop(); });
  }
}

Recorder::~Recorder() {
  try {
    close();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
}

void Recorder::add_sink(std::shared_ptr<MetricsSink> sink) {
  TORCH_CHECK(sink != nullptr, "bnlab::train::Recorder::add_sink: expected a sink, got nullptr");
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->sinks.push_back(std::move(sink));
}

const std::vector<LayerInfo>& Recorder::layers() const { return impl_->infos; }

void Recorder::begin_step(int64_t step) {
  auto& d = *impl_;
  TORCH_CHECK(!d.closed, "bnlab::train::Recorder::begin_step: the recorder is closed");
  d.rethrow_error();
  d.step = step;
  d.in_step = true;
  d.val_loss = kNotMeasured;
  d.val_accuracy = kNotMeasured;
  d.histogram_step = d.options.histogram_every() > 0 && step % d.options.histogram_every() == 0;
  torch::NoGradGuard no_grad;
  d.current = d.take_buffer();
  d.attach(*d.current);
  // Forward slots are all written by each forward (layers whose forward did
  // not run are flagged in end_step); the gradient slots are only written if
  // the backward reaches the layer, so they start out as "not measured".
  auto& b = *d.current;
  for (size_t i = 0; i < d.layers.size(); ++i) {
    const auto& stats = b.stats_views[i];
    if (!stats.defined()) continue;
    const bool activation = d.layers[i].info.kind == LayerKind::kActivation;
    const int64_t grad_slots[3] = {
        activation ? int64_t{act::kGradOutputSumSq} : int64_t{bns::kGradOutputSumSq},
        activation ? int64_t{act::kGradInputSumSq} : int64_t{bns::kGradInputSumSq},
        activation ? int64_t{act::kNonFiniteGradInput} : int64_t{bns::kNonFiniteGradInput}};
    if (stats.device().is_cpu()) {
      double* row = stats.data_ptr<double>();
      for (int64_t k : grad_slots) row[k] = kNotMeasured;
    } else {
      for (int64_t k : grad_slots) stats[k].fill_(kNotMeasured);
    }
  }
  if (!d.snapshots_ready) {
    for (auto& l : d.layers) {
      for (auto& p : l.params) p.snapshot.copy_(p.param.detach());
    }
    d.snapshots_ready = true;
  }
  for (auto& l : d.layers) {
    if (l.probe) {
      l.probe->capture_tensors = d.histogram_step;
      l.probe->forward_sequence_nr = -1;
    }
  }
  // Only host rows: on other devices the fused optimizers take torch's ops,
  // which report nothing.
  if (d.update_statistics && d.device.is_cpu()) d.update_statistics->set_rows(b.param_row_pointers);
  d.step_start = Clock::now();
}

void Recorder::set_eval(double val_loss, double val_accuracy) {
  impl_->val_loss = val_loss;
  impl_->val_accuracy = val_accuracy;
}

void Recorder::end_step(const torch::Tensor& loss, double lr, int64_t batch_size) {
  auto& d = *impl_;
  TORCH_CHECK(d.in_step, "bnlab::train::Recorder::end_step: expected begin_step(step) first");
  TORCH_CHECK(!loss.defined() || loss.numel() == 1,
              "bnlab::train::Recorder::end_step: expected the step's loss as a tensor of one element, got shape ",
              loss.sizes());
  d.in_step = false;
  torch::NoGradGuard no_grad;
  RawStep raw = d.take_raw();
  raw.step = d.step;
  raw.lr = lr;
  raw.batch_size = batch_size;
  raw.val_loss = d.val_loss;
  raw.val_accuracy = d.val_accuracy;
  auto& b = *d.current;
  d.requests.clear();
  d.unmeasured_updates.clear();
  size_t param_index = 0;
  for (auto& l : d.layers) {
    raw.ran.push_back(!l.probe || l.probe->forward_sequence_nr >= 0);
    for (auto& p : l.params) {
      const size_t index = param_index++;
      const auto& grad = p.param.grad();
      raw.has_grad.push_back(grad.defined());
      if (d.update_statistics && d.update_statistics->written(index)) {
        p.snapshot_current = false;  // the optimizer measured this step's update
        continue;
      }
      // Measured here, against the snapshot; if the optimizer reported the
      // previous step instead, the snapshot is older than that step and this
      // step's Δθ is unknown (the kernel still brings the snapshot up to date).
      if (!p.snapshot_current) d.unmeasured_updates.push_back(index);
      p.snapshot_current = true;
      d.requests.push_back({p.param, grad, p.snapshot, b.param_rows[index]});
    }
  }
  if (d.update_statistics) d.update_statistics->clear_rows();  // the buffer goes to the writer
  kernels::parameter_stats_many(d.requests);
  for (size_t index : d.unmeasured_updates) {
    b.param_rows[index].narrow(0, ps::kDeltaSum, 2).fill_(kNotMeasured);
  }
  // Let go of the gradients now. Held until the next end_step, they would
  // outlive the user's zero_grad(set_to_none) and be freed here, a step late,
  // on the recorder's time, after the next backward allocated new ones.
  d.requests.clear();
  if (loss.defined() && loss.device().is_cpu()) {
    // A host scalar: read it now, no sync (float and double directly: a
    // detach() for the writer took 0.2 µs).
    if (loss.scalar_type() == torch::kFloat) {
      raw.loss_value = static_cast<double>(*loss.data_ptr<float>());
    } else if (loss.scalar_type() == torch::kDouble) {
      raw.loss_value = *loss.data_ptr<double>();
    } else {
      raw.loss_value = loss.item<double>();
    }
  } else if (loss.defined()) {
    // On a device, a copy for the writer to read (reading it here would wait
    // for the device); a copy, so that reusing `loss` in place changes nothing.
    raw.loss = loss.detach().clone();
  }
  if (!d.order_known) {
    // Rank the layers once, from one clock: the autograd sequence numbers of
    // this step (probed layers' outputs, other layers' parameter consumers).
    d.compute_graph_order(loss);
    std::vector<std::pair<int64_t, size_t>> keys;
    for (size_t i = 0; i < d.layers.size(); ++i) {
      const auto& l = d.layers[i];
      int64_t key = l.graph_order;
      if (l.probe && l.probe->forward_sequence_nr >= 0) key = l.probe->forward_sequence_nr;
      keys.emplace_back(key, i);
    }
    std::stable_sort(keys.begin(), keys.end());
    for (size_t rank = 0; rank < keys.size(); ++rank) {
      if (keys[rank].first != std::numeric_limits<int64_t>::max()) {
        d.layers[keys[rank].second].forward_rank = static_cast<int64_t>(rank);
      }
    }
  }
  for (const auto& l : d.layers) raw.order_keys.push_back(l.forward_rank);
  if (d.histogram_step) {
    // Hand the captured tensors to the writer, which bins them.
    for (auto& l : d.layers) {
      std::array<torch::Tensor, 4> c;
      if (l.probe) {
        c = {std::move(l.probe->input), std::move(l.probe->output), std::move(l.probe->grad_output),
             std::move(l.probe->grad_input)};
        l.probe->input = l.probe->output = l.probe->grad_output = l.probe->grad_input = torch::Tensor();
      }
      raw.captures.push_back(std::move(c));
    }
  }
  // The step's buffer goes to the writer whole: no copy on this thread.
  raw.stats = std::move(d.current);
  raw.step_time_s = std::chrono::duration<double>(Clock::now() - d.step_start).count();

  if (!d.writer.joinable()) {
    d.process(raw);
    std::lock_guard<std::mutex> lock(d.mutex);
    if (raw.stats) d.free_buffers.push_back(std::move(raw.stats));
    d.pool.push_back(std::move(raw));
    return;
  }
  {
    std::unique_lock<std::mutex> lock(d.mutex);
    // Back-pressure: a slow sink slows training rather than growing memory.
    if (d.queue.size() >= d.max_queue && !d.error) {
      d.main_waiting = true;
      d.writer_cv.notify_all();
      d.main_cv.wait(lock, [&] { return d.queue.size() < d.max_queue || d.error; });
      d.main_waiting = false;
    }
    d.queue.push_back(std::move(raw));
  }
  d.rethrow_error();
}

void Recorder::flush() {
  auto& d = *impl_;
  if (d.writer.joinable()) {
    std::unique_lock<std::mutex> lock(d.mutex);
    d.flush_requested = true;
    d.main_waiting = true;
    d.writer_cv.notify_all();
    d.main_cv.wait(lock, [&] { return (d.queue.empty() && d.busy == 0) || d.error; });
    d.main_waiting = false;
    d.flush_requested = false;
  }
  d.rethrow_error();
  std::lock_guard<std::mutex> lock(d.mutex);
  for (auto& sink : d.sinks) sink->flush();
}

void Recorder::close() {
  auto& d = *impl_;
  if (d.closed) return;
  std::exception_ptr failure;
  try {
    flush();
  } catch (...) {
    failure = std::current_exception();
  }
  d.closed = true;
  if (d.update_statistics) d.update_statistics->clear_rows();
  {
    std::lock_guard<std::mutex> lock(d.mutex);
    d.stopping = true;
  }
  d.writer_cv.notify_all();
  if (d.writer.joinable()) d.writer.join();
  for (auto& l : d.layers) {
    if (l.probeable != nullptr) l.probeable->set_probe(nullptr);
  }
  if (failure) std::rethrow_exception(failure);
}

void Recorder::attach_probes(bool attached) {
  for (auto& l : impl_->layers) {
    if (l.probeable != nullptr) l.probeable->set_probe(attached && !impl_->closed ? l.probe : nullptr);
  }
}

void Recorder::take_update_statistics_from(optim::ReportsUpdateStatistics& optimizer) {
  auto& d = *impl_;
  TORCH_CHECK(!d.in_step, "bnlab::train::Recorder::take_update_statistics_from: expected to be called between steps, "
              "got a call between begin_step and end_step");
  if (!d.update_statistics) {
    std::vector<torch::Tensor> params;
    for (const auto& l : d.layers) {
      for (const auto& p : l.params) params.push_back(p.param);
    }
    d.update_statistics = std::make_shared<optim::UpdateStatistics>(params);
  }
  optimizer.report_update_statistics(d.update_statistics);
}

Recorder::ProbePause::ProbePause(Recorder& recorder) : recorder_(recorder) { recorder_.attach_probes(false); }

Recorder::ProbePause::~ProbePause() { recorder_.attach_probes(true); }

std::vector<Alert> Recorder::alerts() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->alerts;
}

StepMetrics Recorder::last_step() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->last;
}

}  // namespace bnlab::train
