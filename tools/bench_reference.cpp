// bench_reference: how fast the CPU reference executor is. Times a large convolution and a large
// matrix product alone (GFLOP/s of the im2col + double GEMM path), then a ResNet-50 forward pass
// (torchvision v1.5 structure, random weights, batch 1, 3x224x224) built as an IR graph.
//
//   bench_reference [--runs N]
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>

#include <fmt/format.h>

#include "kiln/ir/graph.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/reference/executor.hpp"

using namespace kiln;
using i64 = std::int64_t;

extern "C" char* openblas_get_corename(void);

namespace {

// OpenBLAS (DYNAMIC_ARCH) falls back to its slowest kernels ("Prescott", SSE3) on CPUs newer
// than itself, e.g. Emerald Rapids under Debian 12's 0.3.21: dgemm then runs 3x slower. The core
// type is chosen when the library loads, so the only fix from inside is to run again with
// OPENBLAS_CORETYPE set to the newest kernel set the CPU supports.
void use_fast_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;
  const std::string core = openblas_get_corename();
  if (core != "Prescott" && core != "prescott" && core != "Core2" && core != "core2") return;
  const char* type = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                     : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                       : nullptr;
  if (!type) return;
  std::fprintf(
      stderr,
      "bench_reference: OpenBLAS chose '%s' kernels; running again with OPENBLAS_CORETYPE=%s\n",
      core.c_str(), type);
  setenv("OPENBLAS_CORETYPE", type, 1);
  execv("/proc/self/exe", argv);  // returns only on failure: go on with the slow kernels
}

std::mt19937 rng(42);

Tensor random_tensor(std::vector<i64> dims, double scale) {
  Tensor t(DType::f32, dims);
  std::normal_distribution<float> n(0.0f, static_cast<float>(scale));
  float* p = t.data<float>();
  for (i64 i = 0; i < t.numel(); ++i) p[i] = n(rng);
  return t;
}

Tensor filled(std::vector<i64> dims, float v) {
  Tensor t(DType::f32, dims);
  float* p = t.data<float>();
  for (i64 i = 0; i < t.numel(); ++i) p[i] = v;
  return t;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Builds ResNet-50 node by node; counts the multiply-add FLOPs of Conv and Gemm.
class ResNetBuilder {
 public:
  Graph g;
  double flops = 0;

  std::string conv_bn(const std::string& x, const std::string& name, i64 cin, i64 cout, i64 k,
                      i64 stride, i64 hw_out, bool relu) {
    const std::string w = name + ".weight";
    g.weights[w] =
        random_tensor({cout, cin, k, k}, std::sqrt(2.0 / static_cast<double>(cin * k * k)));
    Node c;
    c.op = "Conv";
    c.name = name;
    c.inputs = {x, w};
    c.outputs = {name};
    c.attrs["kernel_shape"] = std::vector<i64>{k, k};
    c.attrs["strides"] = std::vector<i64>{stride, stride};
    c.attrs["pads"] = std::vector<i64>{k / 2, k / 2, k / 2, k / 2};
    g.add_node(c);
    flops += 2.0 * static_cast<double>(cout * cin * k * k * hw_out * hw_out);
    const std::string bn = name + ".bn";
    for (const char* p : {"weight", "bias", "running_mean", "running_var"}) {
      const std::string key = bn + "." + p;
      if (std::strcmp(p, "running_var") == 0)
        g.weights[key] = filled({cout}, 1.0f);
      else if (std::strcmp(p, "weight") == 0)
        g.weights[key] = filled({cout}, 0.5f);
      else
        g.weights[key] = random_tensor({cout}, 0.01);
    }
    Node b;
    b.op = "BatchNormalization";
    b.name = bn;
    b.inputs = {name, bn + ".weight", bn + ".bias", bn + ".running_mean", bn + ".running_var"};
    b.outputs = {bn};
    g.add_node(b);
    return relu ? unary("Relu", bn, name + ".relu") : bn;
  }

  std::string unary(const std::string& op, const std::string& x, const std::string& name) {
    Node n;
    n.op = op;
    n.name = name;
    n.inputs = {x};
    n.outputs = {name};
    g.add_node(n);
    return name;
  }

  std::string bottleneck(const std::string& x, const std::string& name, i64 cin, i64 width,
                         i64 stride, i64 hw_in) {
    const i64 hw = hw_in / stride;
    std::string y = conv_bn(x, name + ".conv1", cin, width, 1, 1, hw_in, true);
    y = conv_bn(y, name + ".conv2", width, width, 3, stride, hw, true);  // v1.5: stride here
    y = conv_bn(y, name + ".conv3", width, width * 4, 1, 1, hw, false);
    std::string skip = x;
    if (stride != 1 || cin != width * 4)
      skip = conv_bn(x, name + ".downsample", cin, width * 4, 1, stride, hw, false);
    Node add;
    add.op = "Add";
    add.name = name + ".add";
    add.inputs = {y, skip};
    add.outputs = {add.name};
    g.add_node(add);
    return unary("Relu", add.name, name + ".relu");
  }

  void build() {
    g.name = "resnet50";
    g.inputs.push_back({"data", TensorType{DType::f32, Shape{1, 3, 224, 224}}});
    std::string x = conv_bn("data", "conv1", 3, 64, 7, 2, 112, true);
    Node mp;
    mp.op = "MaxPool";
    mp.name = "maxpool";
    mp.inputs = {x};
    mp.outputs = {"maxpool"};
    mp.attrs["kernel_shape"] = std::vector<i64>{3, 3};
    mp.attrs["strides"] = std::vector<i64>{2, 2};
    mp.attrs["pads"] = std::vector<i64>{1, 1, 1, 1};
    g.add_node(mp);
    x = "maxpool";
    const i64 blocks[] = {3, 4, 6, 3}, widths[] = {64, 128, 256, 512};
    i64 cin = 64, hw = 56;
    for (int l = 0; l < 4; ++l)
      for (i64 b = 0; b < blocks[l]; ++b) {
        const i64 stride = (b == 0 && l > 0) ? 2 : 1;
        x = bottleneck(x, fmt::format("layer{}.{}", l + 1, b), cin, widths[l], stride, hw);
        hw /= stride;
        cin = widths[l] * 4;
      }
    x = unary("GlobalAveragePool", x, "avgpool");
    if (OpRegistry::instance().find("Flatten")) {
      x = unary("Flatten", x, "flatten");
    } else {  // the tensor family may not be there yet: Reshape does the same here
      g.weights["flatten.shape"] = Tensor::from<i64>({2}, {1, 2048});
      Node r;
      r.op = "Reshape";
      r.name = "flatten";
      r.inputs = {x, "flatten.shape"};
      r.outputs = {"flatten"};
      g.add_node(r);
      x = "flatten";
    }
    g.weights["fc.weight"] = random_tensor({1000, 2048}, std::sqrt(1.0 / 2048));
    g.weights["fc.bias"] = random_tensor({1000}, 0.01);
    Node fc;
    fc.op = "Gemm";
    fc.name = "fc";
    fc.inputs = {x, "fc.weight", "fc.bias"};
    fc.outputs = {"logits"};
    fc.attrs["transB"] = i64{1};
    g.add_node(fc);
    flops += 2.0 * 1000 * 2048;
    g.outputs = {"logits"};
  }
};

struct Timing {
  double wall = 1e30;  // best wall-clock seconds
  double cpu = 1e30;   // process CPU seconds of that run (all threads)
};

// The machine may be shared: report the best wall time and the CPU time per run, so that
// GFLOP/s per CPU-second stays meaningful when other processes take the cores.
template <class F>
Timing best_of(int runs, F&& f) {
  Timing best;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    f();
    const double w = seconds_since(t0), c = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
    if (w < best.wall) best = Timing{w, c};
  }
  return best;
}

void report(const char* what, const Timing& t, double flops) {
  std::printf("%-40s %9.1f ms  %6.2f GFLOP/s  (%.2f GFLOP per CPU-second)\n", what, t.wall * 1e3,
              flops / t.wall / 1e9, flops / t.cpu / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  use_fast_blas_kernels(argv);
  int runs = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc)
      runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--help" || a == "-h") {
      std::printf("usage: bench_reference [--runs N]\n");
      return 0;
    } else {
      std::fprintf(stderr, "bench_reference: unknown argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }
  try {
    // A large convolution alone: [1,256,56,56] * [256,256,3,3], pads 1.
    {
      const Tensor x = random_tensor({1, 256, 56, 56}, 1.0),
                   w = random_tensor({256, 256, 3, 3}, 0.03);
      Node n;
      n.op = "Conv";
      n.name = "conv";
      n.inputs = {"x", "w"};
      n.outputs = {"y"};
      n.attrs["pads"] = std::vector<i64>{1, 1, 1, 1};
      report("conv [1,256,56,56] * [256,256,3,3]:",
             best_of(runs,
                     [&] {
                       reference::run_node(n, {&x, &w});
                     }),
             2.0 * 256 * 256 * 9 * 56 * 56);
    }
    // A large matrix product alone: [1024,1024] x [1024,1024].
    {
      const Tensor a = random_tensor({1024, 1024}, 1.0), b = random_tensor({1024, 1024}, 1.0);
      Node n;
      n.op = "MatMul";
      n.name = "matmul";
      n.inputs = {"a", "b"};
      n.outputs = {"y"};
      report("matmul [1024,1024] x [1024,1024]:",
             best_of(runs,
                     [&] {
                       reference::run_node(n, {&a, &b});
                     }),
             2.0 * 1024 * 1024 * 1024);
    }
    ResNetBuilder rb;
    rb.build();
    rb.g.infer();
    std::printf("resnet50: %zu nodes, %zu weights, output %s, %.2f GFLOP per image\n",
                rb.g.nodes.size(), rb.g.weights.size(), rb.g.type_of("logits").to_string().c_str(),
                rb.flops / 1e9);
    reference::Executor ex(rb.g);
    const reference::TensorMap inputs{{"data", random_tensor({1, 3, 224, 224}, 1.0)}};
    reference::TensorMap out;
    report("resnet50 forward (batch 1):", best_of(runs, [&] { out = ex.run(inputs); }), rb.flops);
    double sum = 0;
    for (float v : out.at("logits").values<float>()) sum += v;
    std::printf("resnet50 logits sum %.4f (OpenBLAS kernels: %s)\n", sum, openblas_get_corename());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_reference: %s\n", e.what());
    return 1;
  }
  return 0;
}
