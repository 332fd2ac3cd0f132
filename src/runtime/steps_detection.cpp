// The detection ops on the GPU: RoiAlign and MaxRoiPool through kernels/detection.cu, in the
// plan's precision (rois too: f16 rounds coordinates past 2048 to even pixels); TopK, GatherND and
// ScatterElements through kernels/select.cu; NonMaxSuppression through kernels/detection.cu, its
// output sized at run time: the step waits for the stream to learn how many boxes it kept, and
// hands them on as the host steps do (steps_host.cpp; docs/CONTROL_FLOW.md says the cost).
#include <algorithm>
#include <array>
#include <optional>

#include <cuda_runtime_api.h>

#include "check.hpp"
#include "detection.cuh"
#include "kiln/ir/detection.hpp"
#include "kiln/ir/shape_rules.hpp"
#include "select.cuh"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

/// What RoiAlign and MaxRoiPool read alike: X (input 0, a contiguous NCHW value), the rois
/// (input 1, contiguous, in X's precision) and Y (output 0), into the fields their kernel
/// arguments share. Returns X's element type.
template <class Args>
kernels::Elem read_rois(const StepEnv& env, Args& a) {
  const Node& n = env.node;
  const DeviceValue x = env.value(n.inputs.at(0)), rois = env.value(n.inputs.at(1)),
                    y = env.value(n.outputs.at(0));
  if (x.dims.size() != 4 || !x.contiguous())
    unsupported(n, fmt::format("{} (the GPU step takes a contiguous NCHW input)", x.describe()));
  if (!rois.contiguous() || rois.elem() != x.elem())
    unsupported(n, fmt::format("rois {} (contiguous, in X's precision)", rois.describe()));
  a.batch = x.dims[0], a.channels = x.dims[1], a.height = x.dims[2], a.width = x.dims[3];
  a.rois = rois.dims[0];
  a.spatial_scale = static_cast<float>(n.attr_float("spatial_scale", 1.0));
  a.x = pointer_of(env, x);
  a.boxes = pointer_of(env, rois);
  a.y = y.ptr;
  return x.elem();
}

class RoiAlignStep final : public Step {
 public:
  explicit RoiAlignStep(const StepEnv& env) {
    const Node& n = env.node;
    auto& a = args_;
    elem_ = read_rois(env, a);
    const DeviceValue idx = env.value(n.inputs.at(2));
    if (idx.dtype != DType::i64 || !idx.contiguous())
      unsupported(n, fmt::format("batch_indices {} (int64, contiguous)", idx.describe()));
    a.batch_indices = static_cast<const std::int64_t*>(pointer_of(env, idx));
    a.out_h = n.attr_int("output_height", 1), a.out_w = n.attr_int("output_width", 1);
    a.sampling_ratio = n.attr_int("sampling_ratio", 0);
    a.max_mode = n.attr_string("mode", "avg") == "max";
    a.half_pixel = n.attr_string("coordinate_transformation_mode", "half_pixel") == "half_pixel";
  }
  void run(const RunArgs& r) override { KILN_CHECK(kernels::roi_align(elem_, args_, r.stream)); }
  std::string kind() const override { return "roi-align"; }

 private:
  kernels::RoiAlignArgs args_;
  kernels::Elem elem_ = kernels::Elem::f32;
};

class MaxRoiPoolStep final : public Step {
 public:
  explicit MaxRoiPoolStep(const StepEnv& env) {
    elem_ = read_rois(env, args_);
    const auto pooled = env.node.attr_ints("pooled_shape");
    args_.pooled_h = pooled.at(0), args_.pooled_w = pooled.at(1);
  }
  void run(const RunArgs& r) override { KILN_CHECK(kernels::max_roi_pool(elem_, args_, r.stream)); }
  std::string kind() const override { return "max-roi-pool"; }

 private:
  kernels::MaxRoiPoolArgs args_;
  kernels::Elem elem_ = kernels::Elem::f32;
};

/// How select.cu reads a value's elements: its float storage, or int32/int64.
kernels::ValueType value_type(const Node& n, const DeviceValue& v) {
  if (v.dtype == DType::i64) return kernels::ValueType::i64;
  if (v.dtype == DType::i32) return kernels::ValueType::i32;
  if (v.dtype != DType::f32 && v.dtype != DType::f16 && v.dtype != DType::bf16)
    unsupported(n, fmt::format("{} (the GPU step takes floats, int32 and int64)", v.describe()));
  switch (v.elem()) {
    case kernels::Elem::f16: return kernels::ValueType::f16;
    case kernels::Elem::bf16: return kernels::ValueType::bf16;
    default: return kernels::ValueType::f32;
  }
}

/// TopK: each row sorted by CUB's segmented radix sort (stable, so ties keep the lower index
/// first, as ONNX asks), the first K kept; `sorted` = 0 gets them sorted too. K is the output's
/// dim (the plan's shapes are static).
class TopKStep final : public Step {
 public:
  explicit TopKStep(const StepEnv& env) {
    const Node& n = env.node;
    const DeviceValue x = env.value(n.inputs.at(0)), v = env.value(n.outputs.at(0)),
                      i = env.value(n.outputs.at(1));
    need_contiguous(n, x);
    need_contiguous(n, v);
    need_contiguous(n, i);
    if (i.dtype != DType::i64) unsupported(n, fmt::format("indices {} (int64)", i.describe()));
    const std::size_t axis =
        static_cast<std::size_t>(norm_axis(n, n.attr_int("axis", -1), x.dims.size()));
    a_.type = value_type(n, x);
    a_.outer = rules::dims_product(x.dims, 0, axis);
    a_.n = x.dims.at(axis);
    a_.inner = rules::dims_product(x.dims, axis + 1, x.dims.size());
    a_.k = v.dims.at(axis);
    a_.largest = n.attr_int("largest", 1) != 0;
    a_.x = pointer_of(env, x);
    a_.values = v.ptr;
    a_.indices = static_cast<std::int64_t*>(i.ptr);
    if (a_.k > a_.n || a_.outer * a_.n * a_.inner >= (i64{1} << 31))
      unsupported(n, fmt::format("TopK of k {} over {} (k at most the axis; under 2^31 values)",
                                 a_.k, x.describe()));
    if (a_.k > 0 && a_.outer * a_.inner > 0) {  // else there is nothing to sort
      workspace_ = kernels::topk_workspace(a_);
      if (workspace_ == 0) unsupported(n, "TopK: CUB's sort refused the sizes");
    }
  }
  std::size_t workspace() const override { return workspace_; }
  void run(const RunArgs& r) override {
    if (a_.k == 0 || a_.outer * a_.inner == 0) return;
    kernels::TopKArgs a = a_;
    a.workspace = r.workspace;
    KILN_CHECK(kernels::topk(a, r.stream));
  }
  std::string kind() const override { return "topk"; }

 private:
  kernels::TopKArgs a_;
  std::size_t workspace_ = 0;
};

class GatherNDStep final : public Step {
 public:
  explicit GatherNDStep(const StepEnv& env) {
    const Node& n = env.node;
    const DeviceValue x = env.value(n.inputs.at(0)), idx = env.value(n.inputs.at(1));
    y_ = env.value(n.outputs.at(0));
    need_contiguous(n, x);
    need_contiguous(n, idx);
    need_contiguous(n, y_);
    if (idx.dtype != DType::i64) unsupported(n, fmt::format("indices {} (int64)", idx.describe()));
    const auto b = static_cast<std::size_t>(n.attr_int("batch_dims", 0));
    const auto m = static_cast<std::size_t>(idx.dims.empty() ? 0 : idx.dims.back());
    if (idx.dims.empty() || b + m > x.dims.size() ||
        m > static_cast<std::size_t>(kernels::kMaxDims))
      unsupported(n, fmt::format("GatherND of {} by {}", x.describe(), idx.describe()));
    batch_ = rules::dims_product(x.dims, 0, b);
    rows_ = rules::dims_product(idx.dims, b, idx.dims.size() - 1);
    indexed_.rank = static_cast<int>(m);
    for (std::size_t d = 0; d < m; ++d) indexed_.d[d] = x.dims[b + d];
    inner_ = rules::dims_product(x.dims, b + m, x.dims.size());
    elem_size_ = x.elem_size();
    x_ = pointer_of(env, x);
    idx_ = static_cast<const std::int64_t*>(pointer_of(env, idx));
  }
  void run(const RunArgs& r) override {
    KILN_CHECK(kernels::gather_nd(elem_size_, batch_, rows_, indexed_, inner_, idx_, x_, y_.ptr,
                                  r.stream));
  }
  std::string kind() const override { return "gather-nd"; }

 private:
  DeviceValue y_;
  const void* x_ = nullptr;
  const std::int64_t* idx_ = nullptr;
  i64 batch_ = 1, rows_ = 1, inner_ = 1;
  kernels::Dims indexed_;
  std::size_t elem_size_ = 4;
};

/// ScatterElements: Y = data, then each update written (or reduced, atomically) at its index.
/// With reduction "none" and repeated indices, which update lands is unspecified (as ONNX says).
class ScatterElementsStep final : public Step {
 public:
  explicit ScatterElementsStep(const StepEnv& env) {
    const Node& n = env.node;
    const DeviceValue data = env.value(n.inputs.at(0)), idx = env.value(n.inputs.at(1)),
                      upd = env.value(n.inputs.at(2));
    y_ = env.value(n.outputs.at(0));
    need_contiguous(n, data);
    need_contiguous(n, idx);
    need_contiguous(n, upd);
    need_contiguous(n, y_);
    if (idx.dtype != DType::i64 && idx.dtype != DType::i32)
      unsupported(n, fmt::format("indices {} (int32 or int64)", idx.describe()));
    const std::string red = n.attr_string("reduction", "none");
    using R = kernels::ScatterReduction;
    if (red == "none")
      red_ = R::none;
    else if (red == "add")
      red_ = R::add;
    else if (red == "mul")
      red_ = R::mul;
    else if (red == "max")
      red_ = R::max;
    else if (red == "min")
      red_ = R::min;
    else
      unsupported(n, fmt::format("reduction '{}'", red));
    elem_size_ = data.elem_size();
    if (red_ != R::none) type_ = value_type(n, data);
    if (red_ != R::none && elem_size_ == 1)
      unsupported(n, fmt::format("reduction '{}' of {}", red, data.describe()));
    axis_ = static_cast<int>(norm_axis(n, n.attr_int("axis", 0), data.dims.size()));
    data_dims_ = to_dims(data.dims);
    index_dims_ = to_dims(idx.dims);
    bytes_ = static_cast<std::size_t>(data.numel()) * elem_size_;
    data_ = pointer_of(env, data);
    idx_ = pointer_of(env, idx);
    int64_ = idx.dtype == DType::i64;
    upd_ = pointer_of(env, upd);
  }
  void run(const RunArgs& r) override {
    if (data_ != y_.ptr && bytes_)
      KILN_CHECK(cudaMemcpyAsync(y_.ptr, data_, bytes_, cudaMemcpyDeviceToDevice, r.stream));
    KILN_CHECK(kernels::scatter_elements(elem_size_, type_, red_, data_dims_, index_dims_, axis_,
                                         idx_, int64_, upd_, y_.ptr, r.stream));
  }
  std::string kind() const override { return "scatter-elements"; }

 private:
  DeviceValue y_;
  const void *data_ = nullptr, *idx_ = nullptr, *upd_ = nullptr;
  bool int64_ = true;
  kernels::ScatterReduction red_ = kernels::ScatterReduction::none;
  kernels::ValueType type_ = kernels::ValueType::f32;
  kernels::Dims data_dims_, index_dims_;
  int axis_ = 0;
  std::size_t elem_size_ = 4, bytes_ = 0;
};

/// NonMaxSuppression: the boxes sorted and suppressed on the device, then (its output's size is
/// known only now) a wait for the stream, and the count and the selected rows copied to the host,
/// where the steps that read values sized at run time (host steps, the output allocator) take
/// them. Its scalar inputs are read when the step is made where they are constants, else after a
/// wait, each run.
class NmsStep final : public Step {
 public:
  explicit NmsStep(const StepEnv& env) : node_(env.node), host_(env.host) {
    const Node& n = env.node;
    const DeviceValue boxes = env.value(n.inputs.at(0)), scores = env.value(n.inputs.at(1));
    need_contiguous(n, boxes);
    need_contiguous(n, scores);
    if (boxes.dims.size() != 3 || scores.dims.size() != 3 || boxes.elem() != scores.elem())
      unsupported(n, fmt::format("boxes {} and scores {} (3-D, of one precision)", boxes.describe(),
                                 scores.describe()));
    elem_ = boxes.elem();
    a_.batches = boxes.dims[0], a_.boxes = boxes.dims[1], a_.classes = scores.dims[1];
    a_.center = n.attr_int("center_point_box", 0) == 1;
    a_.box_data = pointer_of(env, boxes);
    a_.scores = pointer_of(env, scores);
    for (std::size_t i = 2; i < 5 && i < n.inputs.size(); ++i) {
      if (n.inputs[i].empty()) continue;
      Scalar& sc = scalars_[i - 2];
      const DeviceValue v = env.value(n.inputs[i]);
      if (v.numel() > 1) unsupported(n, fmt::format("input {} {} (a scalar)", i, v.describe()));
      if (v.host)
        sc.value = *v.host;
      else
        sc.device = v;
    }
    // The workspace holds every box of a row where max_output_boxes_per_class is computed.
    a_.capacity = a_.boxes;
    if (!scalars_[0].device.ptr) {
      read_scalars(scalars_, a_);
      a_.capacity = std::min(a_.max_out, a_.boxes);
    }
    workspace_ = kernels::nms_workspace(a_);
    if (workspace_ == 0)
      unsupported(n, fmt::format("boxes {} and scores {} (under 2^31 scores)", boxes.describe(),
                                 scores.describe()));
  }
  std::size_t workspace() const override { return workspace_; }
  void run(const RunArgs& r) override {
    kernels::NmsArgs a = a_;
    a.workspace = r.workspace;
    if (std::any_of(scalars_.begin(), scalars_.end(),
                    [](const Scalar& s) { return s.device.ptr; })) {
      KILN_CHECK(cudaStreamSynchronize(r.stream));
      std::array<Scalar, 3> now = scalars_;
      for (Scalar& s : now)
        if (s.device.ptr) s.value = download(s.device);
      read_scalars(now, a);
      a.max_out = std::min(a.max_out, a.capacity);
    }
    KILN_CHECK(kernels::nms(elem_, a, r.stream));
    std::int64_t count = 0;
    KILN_CHECK(cudaMemcpyAsync(&count, kernels::nms_count(a), sizeof count, cudaMemcpyDeviceToHost,
                               r.stream));
    KILN_CHECK(cudaStreamSynchronize(r.stream));
    Tensor out(DType::i64, {count, 3});
    if (count > 0) {
      KILN_CHECK(cudaMemcpyAsync(out.raw(), kernels::nms_rows(a), out.nbytes(),
                                 cudaMemcpyDeviceToHost, r.stream));
      KILN_CHECK(cudaStreamSynchronize(r.stream));
    }
    host_->values[node_.outputs.at(0)] = std::move(out);
  }
  std::string kind() const override { return "nms"; }

 private:
  /// An optional scalar input: its value (none: absent), or the device value it is read from
  /// each run.
  struct Scalar {
    std::optional<Tensor> value;
    DeviceValue device;
  };
  /// The limits as the reference reads them (nms_limits()).
  static void read_scalars(const std::array<Scalar, 3>& s, kernels::NmsArgs& a) {
    auto at = [&](std::size_t i) { return s[i].value ? &*s[i].value : nullptr; };
    const NmsLimits l = nms_limits(at(0), at(1), at(2));
    a.max_out = l.max_out;
    a.iou_threshold = l.iou_threshold;
    a.has_score_threshold = l.score_threshold.has_value();
    a.score_threshold = l.score_threshold.value_or(0.0);
  }

  const Node& node_;
  std::shared_ptr<HostValues> host_;
  kernels::NmsArgs a_;
  kernels::Elem elem_ = kernels::Elem::f32;
  std::array<Scalar, 3> scalars_;
  std::size_t workspace_ = 0;
};

}  // namespace

void register_detection_steps(StepRegistry& r) {
  r.add("RoiAlign", step_factory<RoiAlignStep>);
  r.add("MaxRoiPool", step_factory<MaxRoiPoolStep>);
  r.add("TopK", step_factory<TopKStep>);
  r.add("GatherND", step_factory<GatherNDStep>);
  r.add("ScatterElements", step_factory<ScatterElementsStep>);
  r.add("NonMaxSuppression", step_factory<NmsStep>);
}

}  // namespace kiln::runtime::detail
