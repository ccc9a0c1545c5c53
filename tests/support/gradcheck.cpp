#include "gradcheck.h"

#include <sstream>

namespace bnlab_test {

namespace {

using torch::autograd::variable_list;

std::vector<size_t> differentiable_indices(const variable_list& inputs) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined() && inputs[i].requires_grad()) idx.push_back(i);
  }
  return idx;
}

// Fresh leaves with the same values and requires_grad flags.
variable_list fresh_leaves(const variable_list& inputs) {
  variable_list out;
  for (const auto& t : inputs) {
    out.push_back(t.defined() ? t.detach().clone().requires_grad_(t.requires_grad()) : t);
  }
  return out;
}

// fn's outputs, flattened and detached, with input `which` element `k` shifted by `delta`.
variable_list shifted_outputs(const DifferentiableFn& fn, const variable_list& inputs, size_t which,
                              int64_t k, double delta) {
  auto leaves = fresh_leaves(inputs);
  {
    // Element k in logical (row-major) order, whatever the input's layout.
    torch::NoGradGuard no_grad;
    auto step = torch::zeros({leaves[which].numel()}, leaves[which].options());
    step[k] = delta;
    leaves[which].add_(step.view(leaves[which].sizes()));
  }
  variable_list out;
  for (const auto& o : fn(leaves)) out.push_back(o.defined() ? o.detach().reshape(-1) : o);
  return out;
}

}  // namespace

::testing::AssertionResult gradcheck(const DifferentiableFn& fn, const variable_list& inputs_in,
                                     const GradcheckOptions& options) {
  const auto inputs = fresh_leaves(inputs_in);
  for (const auto& t : inputs) {
    if (t.defined() && t.requires_grad() && t.scalar_type() != torch::kDouble) {
      return ::testing::AssertionFailure() << "gradcheck needs float64 inputs, got "
                                           << t.scalar_type();
    }
  }
  const auto diff = differentiable_indices(inputs);
  const auto outputs = fn(inputs);
  variable_list diff_inputs;
  for (size_t i : diff) diff_inputs.push_back(inputs[i]);

  for (size_t o = 0; o < outputs.size(); ++o) {
    const auto& out = outputs[o];
    if (!out.defined() || !out.requires_grad()) continue;
    const int64_t n_out = out.numel();
    // Analytical Jacobians, one row per output element.
    std::vector<torch::Tensor> analytical;
    for (size_t i : diff) {
      analytical.push_back(torch::zeros({n_out, inputs[i].numel()}, torch::kDouble));
    }
    for (int64_t j = 0; j < n_out; ++j) {
      auto e = torch::zeros({n_out}, torch::kDouble);
      e[j] = 1.0;
      auto grads = torch::autograd::grad({out}, diff_inputs, {e.view(out.sizes())},
                                         /*retain_graph=*/true, /*create_graph=*/false,
                                         /*allow_unused=*/true);
      for (size_t a = 0; a < diff.size(); ++a) {
        if (grads[a].defined()) analytical[a][j].copy_(grads[a].reshape(-1));
      }
    }
    // Numerical Jacobians by central differences.
    for (size_t a = 0; a < diff.size(); ++a) {
      const size_t i = diff[a];
      auto numerical = torch::zeros({n_out, inputs[i].numel()}, torch::kDouble);
      for (int64_t k = 0; k < inputs[i].numel(); ++k) {
        auto plus = shifted_outputs(fn, inputs, i, k, options.eps);
        auto minus = shifted_outputs(fn, inputs, i, k, -options.eps);
        numerical.select(1, k).copy_((plus[o] - minus[o]) / (2.0 * options.eps));
      }
      auto err = (analytical[a] - numerical).abs();
      auto allowed = options.atol + options.rtol * numerical.abs();
      if ((err > allowed).any().item<bool>()) {
        const auto worst = (err - allowed).argmax().item<int64_t>();
        const int64_t row = worst / numerical.size(1);
        const int64_t col = worst % numerical.size(1);
        std::ostringstream msg;
        msg.precision(10);
        msg << "Jacobian mismatch for output " << o << " w.r.t. input " << i << " at (output "
            << row << ", input element " << col << "): analytical "
            << analytical[a][row][col].item<double>() << ", numerical "
            << numerical[row][col].item<double>();
        return ::testing::AssertionFailure() << msg.str();
      }
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult gradgradcheck(const DifferentiableFn& fn, const variable_list& inputs,
                                         const GradcheckOptions& options) {
  const auto outputs = fn(fresh_leaves(inputs));
  const size_t n_in = inputs.size();
  variable_list all = fresh_leaves(inputs);
  std::vector<size_t> used_outputs;
  for (size_t o = 0; o < outputs.size(); ++o) {
    if (!outputs[o].defined() || !outputs[o].requires_grad()) continue;
    used_outputs.push_back(o);
    all.push_back(torch::randn(outputs[o].sizes(), torch::kDouble).requires_grad_(true));
  }
  DifferentiableFn first_derivatives = [&](const variable_list& args) {
    variable_list in(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(n_in));
    auto outs = fn(in);
    variable_list wrt;
    for (const auto& t : in) {
      if (t.defined() && t.requires_grad()) wrt.push_back(t);
    }
    variable_list ys;
    variable_list vs;
    for (size_t u = 0; u < used_outputs.size(); ++u) {
      ys.push_back(outs[used_outputs[u]]);
      vs.push_back(args[n_in + u]);
    }
    auto grads = torch::autograd::grad(ys, wrt, vs, /*retain_graph=*/true, /*create_graph=*/true,
                                       /*allow_unused=*/true);
    for (size_t g = 0; g < grads.size(); ++g) {
      // An input the first derivatives do not depend on: zeros that still
      // depend on the arguments, so the check covers that they stay zero.
      if (!grads[g].defined()) grads[g] = torch::zeros_like(wrt[g]);
    }
    return grads;
  };
  return gradcheck(first_derivatives, all, options);
}

}  // namespace bnlab_test
