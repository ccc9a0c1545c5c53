#include "bnlab/train/alerts.h"

#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace bnlab::train {

AlertMonitor::AlertMonitor(AlertOptions options) : options_(std::move(options)) {}

bool AlertMonitor::sustained(const std::string& key, bool condition) {
  const int64_t patience = std::max<int64_t>(1, options_.patience());
  if (!condition) {
    streak_[key] = 0;
    // An episode ends once the condition has been clear for `patience` steps.
    if (reported_[key] && ++clear_streak_[key] >= patience) reported_[key] = false;
    return false;
  }
  clear_streak_[key] = 0;
  const int64_t streak = ++streak_[key];
  if (streak >= patience && !reported_[key]) {
    reported_[key] = true;
    return true;
  }
  return false;
}

std::vector<Alert> AlertMonitor::observe(const StepMetrics& step) {
  std::vector<Alert> alerts;
  auto raise = [&](std::string kind, std::string layer, std::string message) {
    if (options_.log()) spdlog::warn("[bnlab alert, step {}] {}", step.step, message);
    alerts.push_back(Alert{step.step, std::move(kind), std::move(layer), std::move(message)});
  };

  // Non-finite values: at once, naming the layer where they first appear. A
  // NaN created in the forward pass at layer k spreads through backprop into
  // every earlier layer's gradients, so forward values (outputs, parameters)
  // decide first, in forward order; only a clean forward pass points to the
  // gradients, whose NaN starts nearest the loss: the last in forward order.
  const LayerMetrics* origin = nullptr;
  bool in_forward = true;
  for (const auto& layer : step.layers) {  // step.layers is in forward order
    if (layer.nonfinite_forward > 0) {
      origin = &layer;
      break;
    }
  }
  if (origin == nullptr) {
    in_forward = false;
    for (const auto& layer : step.layers) {
      if (layer.nonfinite_grad > 0) origin = &layer;
    }
  }
  const bool bad_loss = !std::isfinite(step.loss);
  if (bad_loss || origin != nullptr) {
    if (!reported_["nonfinite"]) {
      reported_["nonfinite"] = true;
      std::string where =
          origin == nullptr
              ? std::string("no layer shows NaN/Inf: check the loss function and targets")
              : in_forward
                    ? fmt::format("first in forward order at layer {} ({}, {} NaN/Inf values in its "
                                  "output or parameters)",
                                  origin->name, origin->type, origin->nonfinite_forward)
                    : fmt::format("the forward pass is finite; the gradients turn non-finite at layer "
                                  "{} ({}), the last in forward order with NaN/Inf gradients",
                                  origin->name, origin->type);
      raise("nonfinite", origin != nullptr ? origin->name : "",
            fmt::format("non-finite {}: {}",
                        bad_loss ? fmt::format("loss ({})", std::isnan(step.loss) ? "nan" : fmt::format("{}", step.loss))
                                 : std::string("values"),
                        where));
    }
  } else {
    reported_["nonfinite"] = false;
  }

  for (const auto& layer : step.layers) {
    if (layer.kind == LayerKind::kActivation) {
      if (sustained("saturation:" + layer.name, layer.saturation_pct > options_.saturation_pct())) {
        raise("saturation", layer.name,
              fmt::format("{} ({}): {:.1f}% of units saturated for {} steps (threshold {}%): its "
                          "inputs are too wide; BatchNorm before it or a smaller init gain helps",
                          layer.name, layer.type, layer.saturation_pct, options_.patience(),
                          options_.saturation_pct()));
      }
      if (sustained("dead:" + layer.name, layer.dead_pct > options_.dead_pct())) {
        raise("dead", layer.name,
              fmt::format("{} ({}): {:.1f}% of units dead (saturated on every example) for {} steps "
                          "(threshold {}%)",
                          layer.name, layer.type, layer.dead_pct, options_.patience(), options_.dead_pct()));
      }
    }
    if (layer.kind == LayerKind::kParameters && std::isfinite(layer.weight.update_to_data)) {
      const double r = layer.weight.update_to_data;
      const bool off = r < options_.update_to_data_low() || r > options_.update_to_data_high();
      if (sustained("update:" + layer.name, off)) {
        raise("update_to_data", layer.name,
              fmt::format("{} ({}): update:data {:.2e} outside [{:.0e}, {:.0e}] for {} steps: the "
                          "learning rate is too {} for this layer (aim near 1e-3)",
                          layer.name, layer.type, r, options_.update_to_data_low(),
                          options_.update_to_data_high(), options_.patience(),
                          r < options_.update_to_data_low() ? "low" : "high"));
      }
    }
  }

  // Gradient flow: ‖∂L/∂y‖ at the first layer over that at the last.
  const LayerMetrics* first = nullptr;
  const LayerMetrics* last = nullptr;
  for (const auto& layer : step.layers) {
    if (layer.kind == LayerKind::kParameters || !std::isfinite(layer.grad_output_norm)) continue;
    if (first == nullptr) first = &layer;
    last = &layer;
  }
  if (first != nullptr && last != first && last->grad_output_norm > 0) {
    const double ratio = first->grad_output_norm / last->grad_output_norm;
    if (sustained("vanishing", ratio < options_.vanishing_ratio())) {
      raise("vanishing", "",
            fmt::format("gradients vanish: ‖dL/dy‖ at {} is {:.2e} of that at {} for {} steps",
                        first->name, ratio, last->name, options_.patience()));
    }
    if (sustained("exploding", ratio > options_.exploding_ratio())) {
      raise("exploding", "",
            fmt::format("gradients explode: ‖dL/dy‖ at {} is {:.2e}x that at {} for {} steps",
                        first->name, ratio, last->name, options_.patience()));
    }
  }
  return alerts;
}

}  // namespace bnlab::train
