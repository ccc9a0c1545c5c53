#include "bnlab/train/recorder.h"

#include "bnlab/nn/modules/activation.h"
#include "bnlab/nn/modules/batch_norm.h"
#include "bnlab/nn/probe.h"
#include "kernels/reduce.h"

#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <algorithm>
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
  double max_local_derivative = 1.0;
  bool can_saturate = true;
  std::vector<ParamSlot> params;
  int64_t graph_order = std::numeric_limits<int64_t>::max();  // from the autograd graph
  int64_t forward_rank = std::numeric_limits<int64_t>::max();  // fixed at the first step
};

// What the training thread hands the writer for one step.
struct RawStep {
  int64_t step = 0;
  double lr = kNotMeasured;
  int64_t batch_size = 0;
  double step_time_s = kNotMeasured;
  double val_loss = kNotMeasured;
  double val_accuracy = kNotMeasured;
  std::vector<double> stats;      // the whole buffer
  std::vector<float> samples;     // the whole sample buffer
  std::vector<int64_t> order_keys;  // per layer; max() when unknown
  std::vector<bool> has_grad;       // per parameter slot, flattened in layer order
  std::vector<Histogram> histograms;
};

}  // namespace

struct Recorder::Impl {
  RecorderOptions options;
  std::shared_ptr<torch::nn::Module> model;
  std::vector<LayerSlot> layers;
  std::vector<LayerInfo> infos;
  torch::Tensor buffer;   // float64 statistics of the step
  torch::Tensor samples;  // float32 activation input samples
  int64_t loss_slot = 0;
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

  // writer thread
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<RawStep> queue;
  size_t max_queue = 64;
  bool stopping = false;
  bool closed = false;
  size_t busy = 0;
  std::exception_ptr error;
  std::thread writer;
  std::vector<Alert> alerts;
  StepMetrics last;

  explicit Impl(RecorderOptions opts) : options(std::move(opts)), monitor(options.alerts()) {}

  void discover();
  void allocate();
  void compute_graph_order(const torch::Tensor& loss);
  std::vector<Histogram> histograms();
  StepMetrics derive(const RawStep& raw) const;
  void process(RawStep raw);
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
    } else if (auto* b = dynamic_cast<nn::BatchNormLayer*>(module.get())) {
      slot.info.kind = LayerKind::kBatchNorm;
      slot.probeable = b;
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
  torch::Device device = torch::kCPU;
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
      l.sample_offset = sample_offset;
      sample_offset += nn::kProbeSampleSize;
    } else if (l.info.kind == LayerKind::kBatchNorm) {
      l.stats_offset = offset;
      offset += bns::kCount;
    }
    for (auto& p : l.params) {
      TORCH_CHECK(p.param.device() == device, "bnlab::train::Recorder: expected every parameter on ",
                  device, ", got ", l.info.name, ".", p.name, " on ", p.param.device());
      p.offset = offset;
      offset += ps::kCount;
    }
  }
  loss_slot = offset++;
  buffer = torch::full({offset}, kNotMeasured, torch::TensorOptions().dtype(torch::kDouble).device(device));
  samples = torch::zeros({std::max<int64_t>(sample_offset, 1)},
                         torch::TensorOptions().dtype(torch::kFloat).device(device));
  for (auto& l : layers) {
    if (l.probeable != nullptr) {
      l.probe = std::make_shared<nn::LayerProbe>();
      const int64_t count = l.info.kind == LayerKind::kActivation ? act::kCount : bns::kCount;
      l.probe->stats = buffer.narrow(0, l.stats_offset, count);
      if (l.sample_offset >= 0) l.probe->sample = samples.narrow(0, l.sample_offset, nn::kProbeSampleSize);
      l.probeable->set_probe(l.probe);
    }
    for (auto& p : l.params) {
      p.row = buffer.narrow(0, p.offset, ps::kCount);
      p.snapshot = torch::empty_like(p.param, torch::MemoryFormat::Contiguous).requires_grad_(false);
    }
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

std::vector<Histogram> Recorder::Impl::histograms() {
  torch::NoGradGuard no_grad;
  std::vector<Histogram> out;
  const int64_t bins = std::max<int64_t>(1, options.histogram_bins());
  for (auto& l : layers) {
    if (!l.probe) continue;
    const std::pair<const char*, torch::Tensor*> quantities[] = {
        {"input", &l.probe->input},
        {"output", &l.probe->output},
        {"grad_output", &l.probe->grad_output},
        {"grad_input", &l.probe->grad_input}};
    for (const auto& [quantity, tensor] : quantities) {
      if (!tensor->defined() || tensor->numel() == 0) continue;
      auto t = tensor->to(torch::kCPU, torch::kDouble).reshape(-1);
      auto finite = t.masked_select(t.isfinite());
      if (finite.numel() == 0) continue;
      Histogram h;
      h.layer = l.info.name;
      h.quantity = quantity;
      h.min = finite.min().item<double>();
      h.max = finite.max().item<double>();
      h.num = static_cast<double>(finite.numel());
      h.sum = finite.sum().item<double>();
      h.sum_squares = (finite * finite).sum().item<double>();
      double lo = h.min;
      double hi = h.max;
      // Bounded outputs get their fixed range, so the saturation peaks sit at its ends.
      if (std::string(quantity) == "output" && l.activation != nullptr) {
        if (auto bounds = l.activation->output_bounds()) std::tie(lo, hi) = *bounds;
      }
      if (!(hi > lo)) {
        lo -= 0.5;
        hi += 0.5;
      }
      auto counts = torch::histc(finite.clamp(lo, hi), bins, lo, hi);
      h.edges.resize(static_cast<size_t>(bins + 1));
      for (int64_t i = 0; i <= bins; ++i) h.edges[static_cast<size_t>(i)] = lo + (hi - lo) * i / bins;
      auto c = counts.contiguous();
      h.counts.assign(c.data_ptr<double>(), c.data_ptr<double>() + bins);
      out.push_back(std::move(h));
    }
    l.probe->input = l.probe->output = l.probe->grad_output = l.probe->grad_input = torch::Tensor();
  }
  return out;
}

StepMetrics Recorder::Impl::derive(const RawStep& raw) const {
  StepMetrics m;
  m.step = raw.step;
  m.loss = raw.stats[static_cast<size_t>(loss_slot)];
  m.lr = raw.lr;
  m.step_time_s = raw.step_time_s;
  m.examples_per_s = raw.step_time_s > 0 ? static_cast<double>(raw.batch_size) / raw.step_time_s : kNotMeasured;
  m.val_loss = raw.val_loss;
  m.val_accuracy = raw.val_accuracy;
  m.histograms = raw.histograms;
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
    const double* s = l.stats_offset >= 0 ? raw.stats.data() + l.stats_offset : nullptr;
    if (l.info.kind == LayerKind::kActivation) {
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
        const auto count = static_cast<int64_t>(zero_if_nan(s[act::kSampleCount]));
        const auto q = nn::sample_quantiles(raw.samples.data() + l.sample_offset, count, {0.15, 0.50, 0.85});
        out.input_p15 = q[0];
        out.input_p50 = q[1];
        out.input_p85 = q[2];
      }
      out.grad_output_norm = std::sqrt(s[act::kGradOutputSumSq]);
      out.grad_input_norm = std::sqrt(s[act::kGradInputSumSq]);
      out.nonfinite_forward = zero_if_nan(s[act::kNonFiniteOutput]);
      out.nonfinite_grad = zero_if_nan(s[act::kNonFiniteGradInput]);
    } else if (l.info.kind == LayerKind::kBatchNorm) {
      out.bn_batch_mean = s[bns::kBatchMeanAvg];
      out.bn_batch_var = s[bns::kBatchVarAvg];
      out.bn_running_mean = s[bns::kRunningMeanAvg];
      out.bn_running_var = s[bns::kRunningVarAvg];
      out.bn_mean_drift = s[bns::kMeanDrift];
      out.bn_var_drift = s[bns::kVarDrift];
      out.grad_output_norm = std::sqrt(s[bns::kGradOutputSumSq]);
      out.grad_input_norm = std::sqrt(s[bns::kGradInputSumSq]);
      out.nonfinite_forward = zero_if_nan(s[bns::kNonFiniteOutput]);
      out.nonfinite_grad = zero_if_nan(s[bns::kNonFiniteGradInput]);
    }
    for (const auto& p : l.params) {
      const double* r = raw.stats.data() + p.offset;
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

void Recorder::Impl::process(RawStep raw) {
  StepMetrics m = derive(raw);
  auto raised = monitor.observe(m);
  for (auto& sink : sinks) sink->write(m);
  std::lock_guard<std::mutex> lock(mutex);
  alerts.insert(alerts.end(), raised.begin(), raised.end());
  last = std::move(m);
}

void Recorder::Impl::writer_loop() {
  for (;;) {
    RawStep raw;
    {
      std::unique_lock<std::mutex> lock(mutex);
      cv.wait(lock, [&] { return stopping || !queue.empty(); });
      if (queue.empty()) return;
      raw = std::move(queue.front());
      queue.pop_front();
      ++busy;
    }
    cv.notify_all();
    try {
      if (!error) process(std::move(raw));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!error) error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex);
      --busy;
    }
    cv.notify_all();
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
  if (d.buffer.device().is_cpu()) {
    std::fill_n(d.buffer.data_ptr<double>(), d.buffer.numel(), kNotMeasured);
  } else {
    d.buffer.fill_(kNotMeasured);
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
  d.step_start = Clock::now();
}

void Recorder::set_eval(double val_loss, double val_accuracy) {
  impl_->val_loss = val_loss;
  impl_->val_accuracy = val_accuracy;
}

void Recorder::end_step(const torch::Tensor& loss, double lr, int64_t batch_size) {
  auto& d = *impl_;
  TORCH_CHECK(d.in_step, "bnlab::train::Recorder::end_step: expected begin_step(step) first");
  d.in_step = false;
  torch::NoGradGuard no_grad;
  RawStep raw;
  raw.step = d.step;
  raw.lr = lr;
  raw.batch_size = batch_size;
  raw.val_loss = d.val_loss;
  raw.val_accuracy = d.val_accuracy;
  for (auto& l : d.layers) {
    for (auto& p : l.params) {
      const auto& grad = p.param.grad();
      raw.has_grad.push_back(grad.defined());
      kernels::parameter_stats(p.param.detach(), grad, p.snapshot, p.row);
    }
  }
  if (loss.defined()) {
    if (d.buffer.device().is_cpu() && loss.device().is_cpu()) {
      d.buffer.data_ptr<double>()[d.loss_slot] = loss.detach().item<double>();
    } else {
      d.buffer[d.loss_slot].copy_(loss.detach().reshape({}));
    }
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
  if (d.histogram_step) raw.histograms = d.histograms();
  // The one host copy of the step.
  auto host = d.buffer.device().is_cpu() ? d.buffer : d.buffer.to(torch::kCPU);
  raw.stats.assign(host.data_ptr<double>(), host.data_ptr<double>() + host.numel());
  auto host_samples = d.samples.device().is_cpu() ? d.samples : d.samples.to(torch::kCPU);
  raw.samples.assign(host_samples.data_ptr<float>(), host_samples.data_ptr<float>() + host_samples.numel());
  raw.step_time_s = std::chrono::duration<double>(Clock::now() - d.step_start).count();

  if (!d.writer.joinable()) {
    d.process(std::move(raw));
    return;
  }
  {
    std::unique_lock<std::mutex> lock(d.mutex);
    // Back-pressure: a slow sink slows training rather than growing memory.
    d.cv.wait(lock, [&] { return d.queue.size() < d.max_queue || d.error; });
    d.queue.push_back(std::move(raw));
  }
  d.cv.notify_all();
  d.rethrow_error();
}

void Recorder::flush() {
  auto& d = *impl_;
  if (d.writer.joinable()) {
    std::unique_lock<std::mutex> lock(d.mutex);
    d.cv.wait(lock, [&] { return (d.queue.empty() && d.busy == 0) || d.error; });
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
  {
    std::lock_guard<std::mutex> lock(d.mutex);
    d.stopping = true;
  }
  d.cv.notify_all();
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
