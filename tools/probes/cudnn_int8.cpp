// A device probe, not part of the build: does cuDNN's graph API run an INT8 convolution (NHWC
// int8 x int8, int32 compute) with the per-channel scale, bias and Relu fused and an int8 (or
// f16) output on this GPU, how fast against the same convolution in FP16, and does its rounding
// equal round-half-even (the CPU reference's)? Issue 13's INT8 convolutions run on cuBLASLt today;
// this decides whether cuDNN's fused engines can replace them. Build and run:
//   g++ -O2 -std=c++17 tools/probes/cudnn_int8.cpp -I/usr/local/cuda/include \
//       -L/usr/local/cuda/lib64 -lcudnn -lcudart -o cudnn_int8 && ./cudnn_int8
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#define CK(x)                                                                     \
  do {                                                                            \
    auto s_ = (x);                                                                \
    if (s_ != CUDNN_STATUS_SUCCESS) {                                             \
      throw std::runtime_error(std::string(#x) + ": " + cudnnGetErrorString(s_)); \
    }                                                                             \
  } while (0)
#define CU(x)                                           \
  do {                                                  \
    auto e_ = (x);                                      \
    if (e_ != cudaSuccess) {                            \
      std::printf("cuda %s\n", cudaGetErrorString(e_)); \
      std::exit(1);                                     \
    }                                                   \
  } while (0)
#include <stdexcept>

struct D {
  cudnnBackendDescriptor_t d = nullptr;
  explicit D(cudnnBackendDescriptorType_t t) { CK(cudnnBackendCreateDescriptor(t, &d)); }
  ~D() {
    if (d) cudnnBackendDestroyDescriptor(d);
  }
  template <class T>
  void set(cudnnBackendAttributeName_t n, cudnnBackendAttributeType_t t, int64_t c, const T* v) {
    CK(cudnnBackendSetAttribute(d, n, t, c, v));
  }
  void fin() { CK(cudnnBackendFinalize(d)); }
};
using P = std::shared_ptr<D>;

P tensor(int64_t uid, cudnnDataType_t t, std::vector<int64_t> dims, bool virt, int64_t align = 16) {
  // NHWC strides of logical [N,C,H,W]
  std::vector<int64_t> st = {dims[1] * dims[2] * dims[3], 1, dims[3] * dims[1], dims[1]};
  auto p = std::make_shared<D>(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  p->set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &t);
  p->set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data());
  p->set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, st.data());
  p->set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  p->set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
  bool v = virt;
  p->set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &v);
  p->fin();
  return p;
}

P pw(cudnnPointwiseMode_t mode, P x, P b, P y, std::vector<P>& keep) {
  auto d = std::make_shared<D>(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  cudnnDataType_t f = CUDNN_DATA_FLOAT;
  d->set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  d->set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &f);
  d->fin();
  keep.push_back(d);
  auto op = std::make_shared<D>(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op->set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d->d);
  op->set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x->d);
  if (b) op->set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b->d);
  op->set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y->d);
  op->fin();
  return op;
}

struct Shape {
  int64_t n, c, h, w, k, r, stride, pad;
};

// variant: 0 int8 in, fused scale+bias+relu, int8 out; 1 same, f16 out; 2 conv only int8 -> int32;
// 3 fp16 conv + bias + relu (reference speed)
void run(cudnnHandle_t h, const Shape& s, int variant, bool check) {
  const int64_t oh = (s.h + 2 * s.pad - s.r) / s.stride + 1,
                ow = (s.w + 2 * s.pad - s.r) / s.stride + 1;
  const bool f16 = variant == 3;
  const cudnnDataType_t in = f16 ? CUDNN_DATA_HALF : CUDNN_DATA_INT8;
  const cudnnDataType_t out = variant == 0   ? CUDNN_DATA_INT8
                              : variant == 2 ? CUDNN_DATA_INT32
                                             : CUDNN_DATA_HALF;
  const cudnnDataType_t comp = f16 ? CUDNN_DATA_FLOAT : CUDNN_DATA_INT32;
  std::vector<P> keep;
  auto x = tensor(1, in, {s.n, s.c, s.h, s.w}, false);
  auto w = tensor(2, in, {s.k, s.c, s.r, s.r}, false);
  const bool tail = variant != 2;
  auto co = tensor(tail ? 100 : 3, tail ? CUDNN_DATA_FLOAT : out, {s.n, s.k, oh, ow}, tail);
  D conv(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  int64_t dims = 2, pad[2] = {s.pad, s.pad}, st[2] = {s.stride, s.stride}, dil[2] = {1, 1};
  cudnnConvolutionMode_t m = CUDNN_CROSS_CORRELATION;
  conv.set(CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
  conv.set(CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &m);
  conv.set(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims);
  conv.set(CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil);
  conv.set(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, st);
  conv.set(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  conv.set(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  conv.fin();
  D cop(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
  float alpha = 1, beta = 0;
  cop.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x->d);
  cop.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &w->d);
  cop.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &co->d);
  cop.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
          &conv.d);
  cop.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha);
  cop.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta);
  cop.fin();
  std::vector<cudnnBackendDescriptor_t> ops = {cop.d};
  std::vector<int64_t> uids = {1, 2, 3};
  P y;
  if (tail) {
    auto sc = tensor(4, CUDNN_DATA_FLOAT, {1, s.k, 1, 1}, false);
    auto bi = tensor(5, f16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT, {1, s.k, 1, 1}, false);
    auto t1 = tensor(101, CUDNN_DATA_FLOAT, {s.n, s.k, oh, ow}, true);
    auto t2 = tensor(102, CUDNN_DATA_FLOAT, {s.n, s.k, oh, ow}, true);
    y = tensor(3, out, {s.n, s.k, oh, ow}, false);
    keep.insert(keep.end(), {sc, bi, t1, t2, y});
    if (!f16) {
      keep.push_back(pw(CUDNN_POINTWISE_MUL, co, sc, t1, keep));
      ops.push_back(keep.back()->d);
      uids.push_back(4);
    }
    keep.push_back(pw(CUDNN_POINTWISE_ADD, f16 ? co : t1, bi, t2, keep));
    ops.push_back(keep.back()->d);
    uids.push_back(5);
    keep.push_back(pw(CUDNN_POINTWISE_RELU_FWD, t2, nullptr, y, keep));
    ops.push_back(keep.back()->d);
  }
  D g(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  g.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, (int64_t)ops.size(),
        ops.data());
  g.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
  g.fin();
  const char* names[] = {"int8 conv+scale+bias+relu->int8", "int8 conv+scale+bias+relu->f16",
                         "int8 conv->int32", "f16 conv+bias+relu->f16"};
  std::printf("shape n%ld c%ld %ldx%ld k%ld r%ld s%ld | %-34s", s.n, s.c, s.h, s.w, s.k, s.r,
              s.stride, names[variant]);
  int total = 0, built = 0;
  float best = -1;
  int64_t best_ws = 0;
  std::string best_name;
  // buffers
  const size_t es = f16 ? 2 : 1, os = variant == 0 ? 1 : variant == 2 ? 4 : 2;
  size_t nx = s.n * s.c * s.h * s.w, nw = s.k * s.c * s.r * s.r, ny = s.n * s.k * oh * ow;
  std::vector<int8_t> hx(nx), hw(nw);
  std::vector<float> hs(s.k), hb(s.k);
  std::mt19937 rng(1);
  for (auto& v : hx) v = (int8_t)(rng() % 255 - 127);
  for (auto& v : hw) v = (int8_t)(rng() % 255 - 127);
  for (int64_t i = 0; i < s.k; ++i) {
    hs[i] = 1.0f / (float)(s.c * s.r * s.r * 40) * (1 + (i % 7) * 0.1f);
    hb[i] = ((int)(rng() % 21) - 10) * 0.5f;
  }
  void *dx, *dw, *dy, *ds, *db;
  CU(cudaMalloc(&dx, nx * es));
  CU(cudaMalloc(&dw, nw * es));
  CU(cudaMalloc(&dy, ny * os));
  CU(cudaMalloc(&ds, s.k * 4));
  CU(cudaMalloc(&db, s.k * 4));
  if (!f16) {
    CU(cudaMemcpy(dx, hx.data(), nx, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dw, hw.data(), nw, cudaMemcpyHostToDevice));
  } else {
    CU(cudaMemset(dx, 0x3c, nx * 2));
    CU(cudaMemset(dw, 0x1c, nw * 2));
  }
  CU(cudaMemcpy(ds, hs.data(), s.k * 4, cudaMemcpyHostToDevice));
  if (!f16)
    CU(cudaMemcpy(db, hb.data(), s.k * 4, cudaMemcpyHostToDevice));
  else
    CU(cudaMemset(db, 0, s.k * 4));
  void* ptrs[5] = {dx, dw, dy, ds, db};
  std::vector<void*> dp;
  for (auto u : uids) dp.push_back(ptrs[u - 1]);
  for (cudnnBackendHeurMode_t hm : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    D heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g.d);
    heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &hm);
    if (cudnnBackendFinalize(heur.d) != CUDNN_STATUS_SUCCESS) continue;
    int64_t cnt = 0;
    cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                             0, &cnt, nullptr);
    std::vector<std::shared_ptr<D>> cfgs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < cnt && i < 12; ++i) {
      cfgs.push_back(std::make_shared<D>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
      raw.push_back(cfgs.back()->d);
    }
    int64_t got = 0;
    cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                             (int64_t)raw.size(), &got, raw.data());
    total += (int)got;
    for (int64_t i = 0; i < got; ++i) {
      D plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
      plan.set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw[i]);
      if (cudnnBackendFinalize(plan.d) != CUDNN_STATUS_SUCCESS) continue;
      ++built;
      int64_t ws = 0, n = 0;
      cudnnBackendGetAttribute(plan.d, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64,
                               1, &n, &ws);
      void* dws = nullptr;
      if (ws) CU(cudaMalloc(&dws, ws));
      D pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
      pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, (int64_t)uids.size(),
               uids.data());
      pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, (int64_t)dp.size(),
               dp.data());
      pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &dws);
      pack.fin();
      if (cudnnBackendExecute(h, plan.d, pack.d) != CUDNN_STATUS_SUCCESS) {
        if (dws) cudaFree(dws);
        continue;
      }
      CU(cudaDeviceSynchronize());
      cudaEvent_t a, b;
      cudaEventCreate(&a);
      cudaEventCreate(&b);
      cudaEventRecord(a);
      for (int r = 0; r < 10; ++r) cudnnBackendExecute(h, plan.d, pack.d);
      cudaEventRecord(b);
      cudaEventSynchronize(b);
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      ms /= 10;
      if (best < 0 || ms < best) {
        best = ms;
        best_ws = ws;
        char name[256] = {0};
        int64_t nl = 0;
        cudnnBackendGetAttribute(plan.d, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION,
                                 CUDNN_TYPE_CHAR, 255, &nl, name);
        best_name = name;
        if (check && variant == 0) {
          cudnnBackendExecute(h, plan.d, pack.d);
          CU(cudaDeviceSynchronize());
          std::vector<int8_t> hy(ny);
          CU(cudaMemcpy(hy.data(), dy, ny, cudaMemcpyDeviceToHost));
          long mism = 0, off1 = 0, checked = 0;
          int worst = 0;
          for (int64_t nn = 0; nn < s.n; ++nn)
            for (int64_t yy = 0; yy < oh; ++yy)
              for (int64_t xx = 0; xx < ow; ++xx)
                for (int64_t k = 0; k < s.k; ++k) {
                  if ((nn * oh * ow * s.k + yy * ow * s.k + xx * s.k + k) % 13) continue;
                  int64_t acc = 0;
                  for (int64_t c = 0; c < s.c; ++c)
                    for (int64_t ry = 0; ry < s.r; ++ry)
                      for (int64_t rx = 0; rx < s.r; ++rx) {
                        int64_t iy = yy * s.stride - s.pad + ry, ix = xx * s.stride - s.pad + rx;
                        if (iy < 0 || ix < 0 || iy >= s.h || ix >= s.w) continue;
                        acc += (int64_t)hx[((nn * s.h + iy) * s.w + ix) * s.c + c] *
                               hw[((k * s.r + ry) * s.r + rx) * s.c + c];
                      }
                  float v = (float)acc * hs[k] + hb[k];
                  v = v < 0 ? 0 : v;
                  float r = std::nearbyint(v);
                  r = r > 127 ? 127 : r;
                  int got8 = hy[((nn * oh + yy) * ow + xx) * s.k + k];
                  ++checked;
                  if (got8 != (int)r) {
                    ++mism;
                    if (std::abs(got8 - (int)r) == 1) ++off1;
                    worst = std::max(worst, std::abs(got8 - (int)r));
                  }
                }
          std::printf(
              "\n    check: %ld sampled, %ld differ from round-half-even (%ld by one, worst %d)",
              checked, mism, off1, worst);
        }
      }
      cudaEventDestroy(a);
      cudaEventDestroy(b);
      if (dws) cudaFree(dws);
    }
    if (built) break;
  }
  std::printf("\n    configs %d, plans %d, best %.4f ms (ws %ld) %s\n", total, built, best, best_ws,
              best_name.substr(0, 120).c_str());
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
  cudaFree(ds);
  cudaFree(db);
}

int main() {
  cudnnHandle_t h;
  CK(cudnnCreate(&h));
  std::printf("cuDNN %zu\n", cudnnGetVersion());
  Shape small{2, 64, 14, 14, 64, 3, 1, 1};
  try {
    run(h, small, 0, true);
  } catch (const std::exception& e) {
    std::printf("  error: %s\n", e.what());
  }
  Shape shapes[] = {{256, 64, 56, 56, 64, 3, 1, 1},
                    {256, 256, 56, 56, 64, 1, 1, 0},
                    {256, 64, 56, 56, 256, 1, 1, 0},
                    {256, 512, 28, 28, 128, 1, 1, 0},
                    {256, 256, 14, 14, 256, 3, 1, 1}};
  for (auto& s : shapes)
    for (int v : {0, 1, 2, 3}) {
      try {
        run(h, s, v, false);
      } catch (const std::exception& e) {
        std::printf("  error: %s\n", e.what());
      }
    }
  return 0;
}
