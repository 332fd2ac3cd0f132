// LSTM, GRU and RNN steps through cuDNN's RNN API (kiln/runtime/rnn.hpp): the ONNX weights are
// packed once per engine, initial states and outputs are plan values.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kiln/runtime/rnn.hpp"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

class RnnStep final : public Step {
 public:
  explicit RnnStep(const StepEnv& env) {
    const Node& n = env.node;
    auto in = [&](std::size_t i) -> std::optional<DeviceValue> {
      if (i >= n.inputs.size() || n.inputs[i].empty()) return std::nullopt;
      return env.value(n.inputs[i]);
    };
    const DeviceValue x = *in(0);
    if (x.dims.size() != 3)
      throw ShapeError(fmt::format("{}expects X of rank 3, got {}", n.where(), x.describe()));
    RnnShape s;
    s.cell = n.op == "LSTM" ? RnnCell::lstm : n.op == "GRU" ? RnnCell::gru : RnnCell::rnn_tanh;
    const auto acts = n.attr_strings("activations", {});
    if (n.op == "RNN" && !acts.empty()) {
      if (acts[0] == "Relu") s.cell = RnnCell::rnn_relu;
      for (const auto& a : acts)
        if (a != acts[0] || (a != "Relu" && a != "Tanh"))
          unsupported(n, fmt::format("RNN activations {}", fmt::join(acts, ", ")));
    } else if (!acts.empty()) {
      const std::vector<std::string> def = n.op == "LSTM"
                                               ? std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"}
                                               : std::vector<std::string>{"Sigmoid", "Tanh"};
      for (std::size_t i = 0; i < acts.size(); ++i)
        if (acts[i] != def[i % def.size()])
          unsupported(n, fmt::format("{} activations other than the defaults", n.op));
    }
    if (n.attr_int("layout", 0) != 0) unsupported(n, fmt::format("{} with layout = 1", n.op));
    if (n.has_attr("clip")) unsupported(n, fmt::format("{} with clip", n.op));
    if (n.attr_int("input_forget", 0) != 0) unsupported(n, "LSTM with input_forget");
    if (n.op == "GRU" && n.attr_int("linear_before_reset", 0) == 0)
      unsupported(
          n, "GRU with linear_before_reset = 0 (cuDNN's GRU resets after the recurrent product)");
    if (in(7)) unsupported(n, "LSTM peepholes (P)");
    const std::string dir = n.attr_string("direction", "forward");
    s.directions = dir == "bidirectional" ? 2 : 1;
    s.reverse = dir == "reverse";
    s.seq = static_cast<int>(x.dims[0]);
    s.batch = static_cast<int>(x.dims[1]);
    s.input = static_cast<int>(x.dims[2]);
    const auto w = in(1), r = in(2), b = in(3);
    if (!w || !w->host || !r || !r->host || (b && !b->host))
      unsupported(n, fmt::format("{} weights computed at run time", n.op));
    s.hidden = static_cast<int>(n.attr_int("hidden_size", r->dims.at(2)));
    if (auto lens = in(4)) {
      if (!lens->host) unsupported(n, "sequence_lens computed at run time");
      for (double v : lens->host->to_doubles())
        if (static_cast<i64>(v) != s.seq) unsupported(n, "sequence_lens shorter than the sequence");
    }
    x_ = x;
    const Precision prec = x.fp;
    rnn_ = std::make_unique<Rnn>(env.lib, s, prec);
    const auto wf = host_floats(*w->host), rf = host_floats(*r->host);
    std::vector<float> bf;
    if (b) bf = host_floats(*b->host);
    const std::string key =
        fmt::format("rnn:{}:{}:{}:{}", w->name, r->name, b ? b->name : "", static_cast<int>(prec));
    weights_ = env.engine.weights.get(key, rnn_->weight_space_bytes(), [&](DeviceBuffer& buf) {
      rnn_->pack_weights(wf.data(), rf.data(), b ? bf.data() : nullptr, buf.get());
    });
    auto state = [&](std::size_t i) -> const void* {
      auto v = in(i);
      if (!v) return nullptr;
      if (v->fp != x.fp) unsupported(n, "states in another precision than X");
      return pointer_of(env, *v);
    };
    h0_ = state(5);
    c0_ = n.op == "LSTM" ? state(6) : nullptr;
    auto out = [&](std::size_t i) -> void* {
      if (i >= n.outputs.size() || n.outputs[i].empty()) return nullptr;
      return env.value(n.outputs[i]).ptr;
    };
    y_ = out(0);
    yh_ = out(1);
    yc_ = n.op == "LSTM" ? out(2) : nullptr;
  }
  void run(const RunArgs& a) override {
    rnn_->forward(x_.ptr, h0_, c0_, weights_, y_, yh_, yc_, a.workspace, a.stream);
  }
  std::size_t workspace() const override { return rnn_->workspace_bytes(); }
  std::string kind() const override { return "cudnn-rnn"; }

 private:
  DeviceValue x_;
  std::unique_ptr<Rnn> rnn_;
  const void* weights_ = nullptr;
  const void *h0_ = nullptr, *c0_ = nullptr;
  void *y_ = nullptr, *yh_ = nullptr, *yc_ = nullptr;
};

}  // namespace

void register_rnn_steps(StepRegistry& r) {
  for (const char* op : {"LSTM", "GRU", "RNN"}) r.add(op, step_factory<RnnStep>);
}

}  // namespace kiln::runtime::detail
