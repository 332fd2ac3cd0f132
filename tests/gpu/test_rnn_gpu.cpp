// cuDNN recurrent layers (ONNX LSTM, GRU with linear_before_reset=1, RNN tanh and relu; forward,
// reverse and bidirectional; with and without B and initial states) against the CPU reference,
// in FP32 (no TF32) and FP16, plus a run captured into a CUDA graph and a bad shape.
#include <memory>

#include "gpu_check.hpp"
#include "kiln/runtime/rnn.hpp"

using namespace gpu_test;
namespace kr = kiln::runtime;

namespace {

struct Case {
  kr::RnnCell cell = kr::RnnCell::lstm;
  int seq = 1, batch = 1, input = 1, hidden = 1, dirs = 1;
  bool reverse = false;
  bool bias = true;
  bool init = true;  ///< initial_h (and initial_c) given
};

kr::RnnShape shape_of(const Case& c) {
  kr::RnnShape s;
  s.cell = c.cell;
  s.seq = c.seq, s.batch = c.batch, s.input = c.input, s.hidden = c.hidden;
  s.directions = c.dirs;
  s.reverse = c.reverse;
  return s;
}

std::string text(const Case& c) {
  return kr::rnn_shape_text(shape_of(c)) + (c.bias ? " +B" : "") + (c.init ? " +initial" : "");
}

/// How forward() is called: every output, Y omitted (states only), or captured into a graph.
enum class Mode { all, states_only, graph };

void run_case(Report& report, const kr::Library& lib, const Case& c, bool f16, Mode mode) {
  const bool lstm = c.cell == kr::RnnCell::lstm;
  const char* how = mode == Mode::all           ? ""
                    : mode == Mode::states_only ? " [Y omitted]"
                                                : " [CUDA graph]";
  const std::string what = text(c) + how;
  report.run(std::string(f16 ? "f16 " : "f32 ") + what, [&] {
    const kr::RnnShape s = shape_of(c);
    const kr::Rnn rnn(lib, s, f16 ? kr::Precision::f16 : kr::Precision::f32);
    const i64 G = kr::rnn_gates(c.cell), S = c.seq, N = c.batch, I = c.input, H = c.hidden,
              D = c.dirs;
    // Weights scaled so that pre-activations stay O(1) whatever the sizes.
    const float ws = 1.5f / std::sqrt(static_cast<float>(I + H));
    auto x = random_values(S * N * I, -1.f, 1.f);        // [S, N, I]
    auto w = random_values(D * G * H * I, -ws, ws);      // [D, G*H, I]
    auto r = random_values(D * G * H * H, -ws, ws);      // [D, G*H, H]
    auto b = random_values(D * 2 * G * H, -0.5f, 0.5f);  // [D, 2*G*H]
    auto h0 = random_values(D * N * H, -1.f, 1.f);       // [D, N, H]
    auto c0 = random_values(D * N * H, -1.f, 1.f);       // [D, N, H]
    if (f16)
      x = round_f16(x), w = round_f16(w), r = round_f16(r), b = round_f16(b), h0 = round_f16(h0),
      c0 = round_f16(c0);

    // The reference: ONNX node with inputs X, W, R, B, sequence_lens, initial_h, initial_c.
    const kiln::Tensor tx = tensor({S, N, I}, x), tw = tensor({D, G * H, I}, w),
                       tr = tensor({D, G * H, H}, r), tb = tensor({D, 2 * G * H}, b),
                       th = tensor({D, N, H}, h0), tc = tensor({D, N, H}, c0);
    kiln::Node n;
    n.op = kr::rnn_op_name(c.cell);
    n.name = "rnn";
    n.inputs = {"X", "W", "R", c.bias ? "B" : "", "", c.init ? "initial_h" : ""};
    std::vector<const kiln::Tensor*> ins = {
        &tx, &tw, &tr, c.bias ? &tb : nullptr, nullptr, c.init ? &th : nullptr};
    if (lstm) {
      n.inputs.push_back(c.init ? "initial_c" : "");
      ins.push_back(c.init ? &tc : nullptr);
    }
    n.outputs = {"Y", "Y_h"};
    if (lstm) n.outputs.push_back("Y_c");
    n.attrs["hidden_size"] = std::int64_t{H};
    n.attrs["direction"] = std::string(D == 2      ? "bidirectional"
                                       : c.reverse ? "reverse"
                                                   : "forward");
    if (c.cell == kr::RnnCell::gru) n.attrs["linear_before_reset"] = std::int64_t{1};
    if (c.cell == kr::RnnCell::rnn_relu)
      n.attrs["activations"] =
          std::vector<std::string>(static_cast<std::size_t>(D), "Relu");  // one per direction
    const std::vector<kiln::Tensor> ref = kiln::reference::run_node(n, ins);

    // The GPU: weights packed into cuDNN's space (poisoned first), outputs and scratch poisoned.
    DeviceBuffer wspace(rnn.weight_space_bytes());
    wspace.fill_bytes(0xff);
    rnn.pack_weights(w.data(), r.data(), c.bias ? b.data() : nullptr, wspace.get());
    DeviceBuffer dx = upload(x, f16), dh0 = upload(h0, f16), dc0 = upload(c0, f16);
    DeviceBuffer dy = poisoned(S * D * N * H, f16), dyh = poisoned(D * N * H, f16),
                 dyc = poisoned(D * N * H, f16);
    DeviceBuffer work(rnn.workspace_bytes());
    work.fill_bytes(0xff);
    const void* h0p = c.init ? dh0.get() : nullptr;
    const void* c0p = c.init && lstm ? dc0.get() : nullptr;
    void* yp = mode == Mode::states_only ? nullptr : dy.get();
    void* ycp = lstm ? dyc.get() : nullptr;
    if (mode == Mode::graph) {
      cudaStream_t stream = nullptr;
      KILN_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      KILN_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
      try {
        rnn.forward(dx.get(), h0p, c0p, wspace.get(), yp, dyh.get(), ycp, work.get(), stream);
      } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        cudaStreamDestroy(stream);
        throw;
      }
      KILN_CHECK(cudaStreamEndCapture(stream, &graph));
      KILN_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      KILN_CHECK(cudaGraphLaunch(exec, stream));
      KILN_CHECK(cudaStreamSynchronize(stream));
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
      cudaStreamDestroy(stream);
    } else {
      rnn.forward(dx.get(), h0p, c0p, wspace.get(), yp, dyh.get(), ycp, work.get(), nullptr);
    }
    if (mode != Mode::states_only)
      report.check(what + " Y", download(dy, S * D * N * H, f16), ref[0], f16);
    report.check(what + " Y_h", download(dyh, D * N * H, f16), ref[1], f16);
    if (lstm) report.check(what + " Y_c", download(dyc, D * N * H, f16), ref[2], f16);
  });
}

}  // namespace

int main() {
  skip_without_gpu();
  Report report;
  const kr::Library lib;
  using C = kr::RnnCell;
  auto mk = [](C cell, int seq, int batch, int input, int hidden, int dirs, bool reverse, bool bias,
               bool init) {
    Case c;
    c.cell = cell, c.seq = seq, c.batch = batch, c.input = input, c.hidden = hidden, c.dirs = dirs;
    c.reverse = reverse, c.bias = bias, c.init = init;
    return c;
  };
  const std::vector<Case> cases = {
      //  cell          seq batch in  hidden dirs reverse bias  init
      mk(C::lstm, 1, 1, 3, 4, 1, false, true, true),
      mk(C::lstm, 7, 5, 16, 32, 1, false, true, false),
      mk(C::lstm, 7, 5, 64, 128, 2, false, true, true),
      mk(C::lstm, 7, 1, 3, 4, 2, false, false, true),
      mk(C::lstm, 7, 5, 8, 16, 1, true, true, true),
      mk(C::gru, 1, 5, 3, 4, 1, false, true, false),
      mk(C::gru, 7, 5, 16, 32, 2, false, true, true),
      mk(C::gru, 7, 1, 64, 128, 1, false, false, true),
      mk(C::gru, 7, 5, 8, 16, 1, true, true, true),
      mk(C::rnn_tanh, 1, 1, 3, 4, 1, false, true, true),
      mk(C::rnn_tanh, 7, 5, 32, 64, 2, false, true, false),
      mk(C::rnn_tanh, 7, 5, 8, 16, 1, true, false, true),
      mk(C::rnn_relu, 7, 5, 16, 32, 2, false, true, true),
  };
  for (bool f16 : {false, true}) {
    for (const Case& c : cases) run_case(report, lib, c, f16, Mode::all);
    for (const Case& c : cases) run_case(report, lib, c, f16, Mode::states_only);
    run_case(report, lib, cases[2], f16, Mode::graph);  // bidirectional LSTM: cuDNN + Y transpose
    run_case(report, lib, cases[8], f16, Mode::graph);  // reverse GRU: both reversing copies
  }

  // A bad shape throws kiln::Error naming it.
  bool threw = false;
  try {
    kr::RnnShape bad;
    bad.input = 3, bad.hidden = 0;
    const kr::Rnn rnn(lib, bad, kr::Precision::f32);
  } catch (const kiln::Error& e) {
    threw = std::string(e.what()).find("hidden 0") != std::string::npos;
    std::printf("  (message: %s)\n", e.what());
  }
  report.expect("hidden 0 throws naming the shape", threw);
  threw = false;
  try {
    kr::RnnShape bad;
    bad.directions = 2, bad.reverse = true;
    const kr::Rnn rnn(lib, bad, kr::Precision::f32);
  } catch (const kiln::Error& e) {
    threw = std::string(e.what()).find("reverse") != std::string::npos;
  }
  report.expect("reverse with two directions throws", threw);
  return report.finish("gpu-rnn");
}
