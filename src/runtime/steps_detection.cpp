// The detection ops on the GPU: RoiAlign and MaxRoiPool through kernels/detection.cu, in the
// plan's precision (rois too: f16 rounds coordinates past 2048 to even pixels). NonMaxSuppression
// has no GPU step: its output size is known only after it runs (issue 16's data-dependent shapes).
#include "check.hpp"
#include "detection.cuh"
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

}  // namespace

void register_detection_steps(StepRegistry& r) {
  r.add("RoiAlign", step_factory<RoiAlignStep>);
  r.add("MaxRoiPool", step_factory<MaxRoiPoolStep>);
}

}  // namespace kiln::runtime::detail
