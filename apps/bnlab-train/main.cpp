// bnlab-train: trains a small MLP with bnlab BatchNorm on built-in synthetic data.
#include <bnlab/bnlab.h>

#include <torch/torch.h>

#include <spdlog/spdlog.h>

int main() {
  try {
    torch::manual_seed(0);
    bnlab::data::SyntheticClassification data;
    auto model = bnlab::models::make_mlp(
        bnlab::models::MlpOptions(data.options().num_features(), data.options().num_classes()));
    torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    const int64_t batch_size = 128;
    const int64_t steps = 500;
    const auto& train = data.train();
    const int64_t n = train.inputs.size(0);
    for (int64_t step = 1; step <= steps; ++step) {
      auto idx = torch::randint(n, {batch_size}, torch::kLong);
      auto logits = model->forward(train.inputs.index_select(0, idx));
      auto loss = torch::nn::functional::cross_entropy(logits, train.targets.index_select(0, idx));
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      if (step % 50 == 0 || step == 1) spdlog::info("step {:4d}  loss {:.4f}", step, loss.item<double>());
    }
    model->eval();
    torch::NoGradGuard no_grad;
    auto val_logits = model->forward(data.val().inputs);
    auto val_loss = torch::nn::functional::cross_entropy(val_logits, data.val().targets).item<double>();
    auto acc = val_logits.argmax(1).eq(data.val().targets).to(torch::kDouble).mean().item<double>();
    spdlog::info("validation loss {:.4f}  accuracy {:.1f}%", val_loss, 100.0 * acc);
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
