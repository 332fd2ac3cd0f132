// A plugin layer's rule (kiln/ir/plugin.hpp) runs when the program compiles: custom<Fc> with
// out_features 4 and a W of 5 rows is refused there, the diagnostic naming the rule's words.
// expect: custom_layer<Fc
// expect: rows of W (out_features)
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
struct Fc {
  static constexpr const char* domain = "test";
  static constexpr const char* op = "Fc";
  static constexpr int version = 1;
  static constexpr int min_inputs = 2, max_inputs = 2, outputs = 1;
  struct Attrs {
    std::int64_t out_features = 0;
    template <class V>
    void visit(V& v) {
      v("out_features", out_features);
    }
  };
  static constexpr std::array<std::int64_t, 2> rule(const Attrs& a, std::array<std::int64_t, 2> x,
                                                    std::array<std::int64_t, 2> w) {
    kiln::rules::equal_dims("rows of W (out_features)", a.out_features, w[0]);
    return {x[0], a.out_features};
  }
};
void f(const kiln::WeightMap& m) {
  auto x = input<"x", f32>(dyn, fix<6>);
  auto y = custom<Fc, Fc::Attrs{.out_features = 4}>(x, weight<5, 6>(x, m, "w"));
}
