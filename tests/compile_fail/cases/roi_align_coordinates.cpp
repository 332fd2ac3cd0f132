// RoiAlign's rois are [rois, 4] (x1, y1, x2, y2); a width of 5 is MaxRoiPool's (batch first).
// first-line: roi_align_layer<7, 7>
// first-line: kiln::rules::box_coordinates, 4, 5>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32>(dyn, fix<256>, fix<14>, fix<14>);
  auto rois = input<"rois", f32>(dyn, fix<5>);
  auto idx = input<"idx", i64>(dyn);
  auto y = roi_align<7, 7>(x, rois, idx);
}
