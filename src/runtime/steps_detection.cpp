// The detection ops on the GPU: RoiAlign and MaxRoiPool through kernels/detection.cu, in the
// plan's precision (rois too: f16 rounds coordinates past 2048 to even pixels). NonMaxSuppression
// has no GPU step: its output size is known only after it runs (issue 16's data-dependent shapes).
#include "check.hpp"
#include "detection.cuh"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

void require_nchw(const Node& n, const DeviceValue& x) {
  if (x.dims.size() != 4 || !x.contiguous())
    unsupported(n, fmt::format("{} (the GPU step takes a contiguous NCHW input)", x.describe()));
}

class RoiAlignStep final : public Step {
 public:
  explicit RoiAlignStep(const StepEnv& env) {
    const Node& n = env.node;
    const DeviceValue x = env.value(n.inputs.at(0)), rois = env.value(n.inputs.at(1)),
                      idx = env.value(n.inputs.at(2)), y = env.value(n.outputs.at(0));
    require_nchw(n, x);
    if (!rois.contiguous() || rois.elem() != x.elem())
      unsupported(n, fmt::format("rois {} (contiguous, in X's precision)", rois.describe()));
    if (idx.dtype != DType::i64 || !idx.contiguous())
      unsupported(n, fmt::format("batch_indices {} (int64, contiguous)", idx.describe()));
    elem_ = x.elem();
    auto& a = args_;
    a.batch = x.dims[0], a.channels = x.dims[1], a.height = x.dims[2], a.width = x.dims[3];
    a.rois = rois.dims[0];
    a.out_h = n.attr_int("output_height", 1), a.out_w = n.attr_int("output_width", 1);
    a.sampling_ratio = n.attr_int("sampling_ratio", 0);
    a.spatial_scale = static_cast<float>(n.attr_float("spatial_scale", 1.0));
    a.max_mode = n.attr_string("mode", "avg") == "max";
    a.half_pixel = n.attr_string("coordinate_transformation_mode", "half_pixel") == "half_pixel";
    a.x = pointer_of(env, x);
    a.boxes = pointer_of(env, rois);
    a.batch_indices = static_cast<const std::int64_t*>(pointer_of(env, idx));
    a.y = y.ptr;
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
    const Node& n = env.node;
    const DeviceValue x = env.value(n.inputs.at(0)), rois = env.value(n.inputs.at(1)),
                      y = env.value(n.outputs.at(0));
    require_nchw(n, x);
    if (!rois.contiguous() || rois.elem() != x.elem())
      unsupported(n, fmt::format("rois {} (contiguous, in X's precision)", rois.describe()));
    elem_ = x.elem();
    auto& a = args_;
    a.batch = x.dims[0], a.channels = x.dims[1], a.height = x.dims[2], a.width = x.dims[3];
    a.rois = rois.dims[0];
    const auto pooled = n.attr_ints("pooled_shape");
    a.pooled_h = pooled.at(0), a.pooled_w = pooled.at(1);
    a.spatial_scale = static_cast<float>(n.attr_float("spatial_scale", 1.0));
    a.x = pointer_of(env, x);
    a.boxes = pointer_of(env, rois);
    a.y = y.ptr;
  }
  void run(const RunArgs& r) override { KILN_CHECK(kernels::max_roi_pool(elem_, args_, r.stream)); }
  std::string kind() const override { return "max-roi-pool"; }

 private:
  kernels::MaxRoiPoolArgs args_;
  kernels::Elem elem_ = kernels::Elem::f32;
};

}  // namespace

void register_detection_steps(StepRegistry& r) {
  r.add("RoiAlign", [](const StepEnv& env, const FusedBody&) -> std::unique_ptr<Step> {
    return std::make_unique<RoiAlignStep>(env);
  });
  r.add("MaxRoiPool", [](const StepEnv& env, const FusedBody&) -> std::unique_ptr<Step> {
    return std::make_unique<MaxRoiPoolStep>(env);
  });
}

}  // namespace kiln::runtime::detail
