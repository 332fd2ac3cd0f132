// Optimization profiles: the dims each input of a model with dynamic dims may take (min, opt
// and max per input, the trtexec syntax "x:1x3x224x224,y:..."), the checks a shape passes before
// it runs, and the bucket shapes that a back end times its tactics for. A plan built for
// profiles is specialized per exact shape (kiln/build/specializer.hpp); an exact shape runs with
// its bucket's tactics.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/ir/graph.hpp"

namespace kiln::plan {

using Dims = std::vector<std::int64_t>;
/// Dims of graph inputs by name.
using ShapeMap = std::map<std::string, Dims>;

/// The dims one input takes within a profile: min <= opt <= max in every dim.
struct InputRange {
  Dims min, opt, max;
};

struct Profile {
  /// Every graph input, fixed ones too (their three dims equal).
  std::map<std::string, InputRange> inputs;

  ShapeMap min() const;
  ShapeMap opt() const;
  ShapeMap max() const;
  /// Whether every input of `s` lies within its range (ranks and names equal).
  bool contains(const ShapeMap& s) const;
  /// "x: [1,3,64,64] .. [2,3,224,224] .. [4,3,256,256]", one line per input.
  std::string describe() const;
};

/// "x:1x3x224x224,mask:1x128" (the trtexec syntax; `=` is accepted for `:`). `what` names the
/// option in errors.
ShapeMap parse_shape_list(std::string_view text, std::string_view what);
/// "x:1x3x224x224,mask:1x128"
std::string format_shape_list(const ShapeMap& s);

/// Makes a profile of `g` from the dims given for min, opt and max. An input left out of all
/// three takes its fixed dims (an input with a dynamic dim must be named); one given in only some
/// takes the others from what is given (opt defaults to max, min to opt). Throws ShapeError naming
/// the input and dim for: an unknown input, a rank that differs from the model's, a dim that
/// contradicts a fixed dim of the model, a dim below 1, min > opt or opt > max, or one symbol
/// (dim_param) with different ranges in two places.
Profile make_profile(const Graph& g, const ShapeMap& min, const ShapeMap& opt, const ShapeMap& max);

/// A profile covering exactly one shape: `shapes` for the inputs it names, the model's fixed dims
/// (and `dynamic_default` for any other dynamic dim) elsewhere.
Profile fixed_profile(const Graph& g, const ShapeMap& shapes, std::int64_t dynamic_default = 1);

/// Throws ShapeError when `s` is not a shape `p` accepts, naming the input, the dim, the value and
/// the range (`profile` numbers the profile in the message), or a missing or unknown input, a rank
/// mismatch, a dim below 1, or one symbol bound to two values.
void check_shape(const Graph& g, const Profile& p, const ShapeMap& s, std::size_t profile = 0);

/// The bucket shapes of a profile: opt, min, max, then `between` shapes evenly spread from min to
/// max in every dynamic dim (rounded to whole numbers, duplicates dropped). Tactics are timed for
/// each.
std::vector<ShapeMap> bucket_shapes(const Profile& p, int between = 1);
/// The bucket an exact shape runs with: the smallest (by element count) bucket at least as large
/// in every dim, so that its tactics' workspace fits; `buckets` holds the profile's max, so one
/// always does for a shape inside the profile. Throws ShapeError when none covers `s`.
std::size_t bucket_for(const std::vector<ShapeMap>& buckets, const ShapeMap& s);

}  // namespace kiln::plan
