// Shape rules of the rnn op family: RNN, LSTM, GRU (one layer each; stack nodes for more).
//   layout 0: X [seq, batch, input], Y [seq, dirs, batch, hidden], Y_h / Y_c [dirs, batch, hidden]
//   layout 1: X [batch, seq, input], Y [batch, seq, dirs, hidden], Y_h / Y_c [batch, dirs, hidden]
//   W [dirs, gates*hidden, input], R [dirs, gates*hidden, hidden], B [dirs, 2*gates*hidden],
//   sequence_lens [batch] (i32), initial_h / initial_c like Y_h, P [dirs, 3*hidden] (LSTM).
#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "families.hpp"
#include "infer_util.hpp"

namespace kiln::ops {

namespace {

using i64 = std::int64_t;

i64 mul(i64 a, i64 b) { return rules::known(a) && rules::known(b) ? a * b : kDynamic; }

/// A dim of an input that must equal `expected` (either may be unknown); returns the known one.
Dim agree(const InferContext& ctx, const char* what, const Dim& expected, const Dim& got) {
  checked(ctx, [&] { return rules::equal_dims(what, expected.value(), got.value()); });
  return expected.is_fixed() ? expected : got;
}

std::vector<TensorType> infer_recurrent(const InferContext& ctx, i64 gates, int n_state_outputs) {
  const Node& n = ctx.node;
  const TensorType& x = ctx.input(0);
  const TensorType& w = ctx.input(1);
  const TensorType& r = ctx.input(2);
  if (!is_float(x.dtype))
    ctx.fail(fmt::format("X must be a float tensor, got {}", dtype_name(x.dtype)));
  if (x.shape.rank() != 3) ctx.fail(fmt::format("X must have rank 3, got {}", x.shape.to_string()));
  if (w.shape.rank() != 3) ctx.fail(fmt::format("W must have rank 3, got {}", w.shape.to_string()));
  if (r.shape.rank() != 3) ctx.fail(fmt::format("R must have rank 3, got {}", r.shape.to_string()));
  for (std::size_t i = 1; i < ctx.num_inputs(); ++i)
    if (ctx.has_input(i) && i != 4 && ctx.input(i).dtype != x.dtype)
      ctx.fail(fmt::format("input {} has dtype {}, X has {}", i, dtype_name(ctx.input(i).dtype),
                           dtype_name(x.dtype)));

  const std::string direction = n.attr_string("direction", "forward");
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional")
    throw UnsupportedError(n.where() + "attribute 'direction' = '" + direction +
                           "' (expected forward, reverse or bidirectional)");
  const i64 layout = n.attr_int("layout", 0);
  if (layout != 0 && layout != 1)
    throw UnsupportedError(n.where() +
                           fmt::format("attribute 'layout' = {} (expected 0 or 1)", layout));
  const Dim dirs(direction == "bidirectional" ? 2 : 1);
  for (const auto& a : n.attr_strings("activations")) {
    static const char* const known[] = {
        "Relu",       "Tanh",        "Sigmoid", "Affine",   "LeakyRelu", "ThresholdedRelu",
        "ScaledTanh", "HardSigmoid", "Elu",     "Softsign", "Softplus"};
    bool ok = false;  // case-insensitive, as onnxruntime reads them
    for (const char* k : known) {
      const std::string ks(k);
      ok |=
          ks.size() == a.size() && std::equal(ks.begin(), ks.end(), a.begin(), [](char p, char q) {
            return std::tolower(static_cast<unsigned char>(p)) ==
                   std::tolower(static_cast<unsigned char>(q));
          });
    }
    if (!ok)
      throw UnsupportedError(n.where() + "activation '" + a +
                             "' (expected one of Relu, Tanh, Sigmoid, Affine, LeakyRelu, "
                             "ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus)");
  }

  Dim hidden = r.shape[2];
  if (n.has_attr("hidden_size")) {
    const i64 h = n.attr_int("hidden_size");
    if (h <= 0) ctx.fail(fmt::format("hidden_size must be positive, got {}", h));
    checked(ctx, [&] { return rules::rnn_hidden(h, r.shape[2].value()); });
    hidden = Dim(h);
  }
  const Dim seq = layout == 0 ? x.shape[0] : x.shape[1];
  const Dim batch = layout == 0 ? x.shape[1] : x.shape[0];
  const Dim input = x.shape[2];
  const Dim gh(mul(gates, hidden.value()));

  agree(ctx, "directions in W", dirs, w.shape[0]);
  agree(ctx, "directions in R", dirs, r.shape[0]);
  agree(ctx, "rows of W (gates * hidden_size)", gh, w.shape[1]);
  agree(ctx, "rows of R (gates * hidden_size)", gh, r.shape[1]);
  agree(ctx, "input size (columns of W)", w.shape[2], input);
  if (ctx.has_input(3)) {
    const Shape& b = ctx.input(3).shape;
    if (b.rank() != 2) ctx.fail(fmt::format("B must have rank 2, got {}", b.to_string()));
    agree(ctx, "directions in B", dirs, b[0]);
    agree(ctx, "columns of B (2 * gates * hidden_size)", Dim(mul(2, gh.value())), b[1]);
  }
  if (ctx.has_input(4)) {
    const TensorType& s = ctx.input(4);
    if (s.dtype != DType::i32 && s.dtype != DType::i64)
      ctx.fail(fmt::format("sequence_lens must be i32 (or i64), got {}", dtype_name(s.dtype)));
    if (s.shape.rank() != 1)
      ctx.fail(fmt::format("sequence_lens must have rank 1, got {}", s.shape.to_string()));
    agree(ctx, "sequence_lens entries (batch size)", batch, s.shape[0]);
  }
  const Shape state = layout == 0 ? Shape{dirs, batch, hidden} : Shape{batch, dirs, hidden};
  auto check_state = [&](std::size_t i, const char* name) {
    if (!ctx.has_input(i)) return;
    const Shape& s = ctx.input(i).shape;
    if (s.rank() != 3) ctx.fail(fmt::format("{} must have rank 3, got {}", name, s.to_string()));
    for (std::size_t d = 0; d < 3; ++d)
      agree(ctx, fmt::format("dim {} of {} (expected {})", d, name, state.to_string()).c_str(),
            state[d], s[d]);
  };
  check_state(5, "initial_h");
  if (n.op == "LSTM") {
    check_state(6, "initial_c");
    if (ctx.has_input(7)) {
      const Shape& p = ctx.input(7).shape;
      if (p.rank() != 2) ctx.fail(fmt::format("P must have rank 2, got {}", p.to_string()));
      agree(ctx, "directions in P", dirs, p[0]);
      agree(ctx, "columns of P (3 * hidden_size)", Dim(mul(3, hidden.value())), p[1]);
    }
  }
  const Shape y = layout == 0 ? Shape{seq, dirs, batch, hidden} : Shape{batch, seq, dirs, hidden};
  std::vector<TensorType> out{TensorType{x.dtype, y}};
  for (int i = 0; i < n_state_outputs; ++i) out.push_back(TensorType{x.dtype, state});
  return out;
}

}  // namespace

void register_rnn(OpRegistry& r) {
  r.add(schema("RNN", "rnn", 3, 6, 0, 2,
               [](const InferContext& c) { return infer_recurrent(c, 1, 1); }));
  r.add(schema("GRU", "rnn", 3, 6, 0, 2,
               [](const InferContext& c) { return infer_recurrent(c, 3, 1); }));
  r.add(schema("LSTM", "rnn", 3, 8, 0, 3,
               [](const InferContext& c) { return infer_recurrent(c, 4, 2); }));
}

}  // namespace kiln::ops
