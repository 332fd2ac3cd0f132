// Layers with windows and weights: convolution (1-D, 2-D, 3-D), deconvolution, pooling,
// batch_norm, layer_norm, rms_norm, scale, lrn, fully_connected, embedding, weight, softmax. Each
// is a named layer struct whose constexpr rule calls the IR's shape rules (a compile error on fixed
// dims, a ShapeError naming the layer on dims known only when the network is built), plus the
// function users call.
#pragma once

#include "kiln/dsl/core.hpp"

namespace kiln::dsl {
namespace detail {

/// Window parameters of a convolution or pooling layer over S spatial axes, from its options.
template <std::size_t S, class... Os>
struct window {
  static std::string name(const std::string& given) { return given_name<Os...>(given); }
  using K = typename pick<kernel_tag, no_option, Os...>::type;
  using St = typename pick<stride_tag, no_option, Os...>::type;
  using P = typename pick<padding_tag, no_option, Os...>::type;
  using Dl = typename pick<dilation_tag, no_option, Os...>::type;
  using OP = typename pick<out_pad_tag, no_option, Os...>::type;
  static_assert(K::v.size() == 1 || K::v.size() == S,
                "kernel<...>: give one size, or one per spatial axis");
  static_assert(St::v.size() <= 1 || St::v.size() == S,
                "stride<...>: give one value, or one per spatial axis");
  static_assert(Dl::v.size() <= 1 || Dl::v.size() == S,
                "dilation<...>: give one value, or one per spatial axis");
  static_assert(P::v.size() <= 1 || P::v.size() == S || P::v.size() == 2 * S,
                "padding<...>: give one value, one per spatial axis, or begins then ends");
  static constexpr auto k = spread<S>(K::v, 1);
  static constexpr auto s = spread<S>(St::v, 1);
  static constexpr auto d = spread<S>(Dl::v, 1);
  static constexpr auto op = spread<S>(OP::v, 0);
  static constexpr std::array<dim_t, S> pb = [] {
    std::array<dim_t, S> r{};
    for (std::size_t i = 0; i < S; ++i)
      r[i] = P::v.size() == 2 * S ? P::v[i] : spread<S>(P::v, 0)[i];
    return r;
  }();
  static constexpr std::array<dim_t, S> pe = [] {
    std::array<dim_t, S> r{};
    for (std::size_t i = 0; i < S; ++i)
      r[i] = P::v.size() == 2 * S ? P::v[S + i] : spread<S>(P::v, 0)[i];
    return r;
  }();
  static constexpr dim_t g = pick<group_tag, group<1>, Os...>::type::v[0];
  static constexpr dim_t declared_in = pick<in_size_tag, in_features<kDynamic>, Os...>::type::v[0];
  static constexpr bool bias = !has_option<bias_tag, Os...>;
  static constexpr bool ceil = has_option<ceil_tag, Os...>;
  static constexpr bool include_pad = has_option<include_pad_tag, Os...>;

  static void attrs(std::map<std::string, Attribute>& a, bool with_dilation = true) {
    a["kernel_shape"] = to_vector(k);
    a["strides"] = to_vector(s);
    std::vector<dim_t> pads = to_vector(pb);
    pads.insert(pads.end(), pe.begin(), pe.end());
    a["pads"] = pads;
    if (with_dilation) a["dilations"] = to_vector(d);
  }
  static std::vector<dim_t> kernel_dims() { return to_vector(k); }
};

/// Convolution over S spatial axes: [N,C,spatial...] -> [N,Cout,spatial'...].
template <std::size_t S, dim_t Cout, class... Os>
struct conv_rule {
  using W = window<S, Os...>;
  static constexpr std::array<dim_t, S + 2> rule(std::array<dim_t, S + 2> in) {
    rules::positive("output channels must be positive, got {}", Cout);
    for (std::size_t i = 0; i < S; ++i)
      rules::positive("kernel size must be positive, got {}", W::k[i]);
    if (rules::known(W::declared_in)) {
      rules::conv_channels(in[1], W::declared_in / W::g, W::g, Cout);
    } else {
      rules::group_out_channels(Cout, W::g);
      rules::group_in_channels(in[1], W::g);
    }
    std::array<dim_t, S + 2> out{in[0], Cout};
    for (std::size_t i = 0; i < S; ++i)
      out[2 + i] = rules::conv_out_dim(in[2 + i], W::k[i], W::s[i], W::d[i], W::pb[i], W::pe[i]);
    return out;
  }
  /// These rules on the fixed dims of an input of type T, for rules_check (with declared input
  /// channels the rule above asks for them and so for a multiple of the group).
  template <class T, std::size_t... I>
  static auto rules_of(std::index_sequence<I...>)
      -> std::tuple<rule_on<rules::input_rank, S + 2, T::rank>,
                    rule_on<rules::input_channels, W::declared_in, static_dim<T>(1)>,
                    rule_on<rules::group_out_channels, Cout, W::g>,
                    rule_on<rules::group_in_channels, static_dim<T>(1), W::g>,
                    rule_on<rules::conv_out_dim, static_dim<T>(2 + I), W::k[I], W::s[I], W::d[I],
                            W::pb[I], W::pe[I]>...>;
  template <class T>
  using checks = decltype(rules_of<T>(std::make_index_sequence<S>{}));
};

/// Transposed convolution over S spatial axes.
template <std::size_t S, dim_t Cout, class... Os>
struct deconv_rule {
  using W = window<S, Os...>;
  static constexpr std::array<dim_t, S + 2> rule(std::array<dim_t, S + 2> in) {
    rules::positive("output channels must be positive, got {}", Cout);
    rules::conv_channels(in[1], rules::known(in[1]) ? in[1] / W::g : kDynamic, W::g, Cout);
    std::array<dim_t, S + 2> out{in[0], Cout};
    for (std::size_t i = 0; i < S; ++i)
      out[2 + i] =
          rules::deconv_out_dim(in[2 + i], W::k[i], W::s[i], W::d[i], W::pb[i], W::pe[i], W::op[i]);
    return out;
  }
  /// These rules on the fixed dims of an input of type T, for rules_check (conv_channels above
  /// asks for input and output channels that are multiples of the group).
  template <class T, std::size_t... I>
  static auto rules_of(std::index_sequence<I...>)
      -> std::tuple<rule_on<rules::input_rank, S + 2, T::rank>,
                    rule_on<rules::input_channels, W::declared_in, static_dim<T>(1)>,
                    rule_on<rules::group_out_channels, Cout, W::g>,
                    rule_on<rules::group_in_channels, static_dim<T>(1), W::g>,
                    rule_on<rules::deconv_out_dim, static_dim<T>(2 + I), W::k[I], W::s[I], W::d[I],
                            W::pb[I], W::pe[I], W::op[I]>...>;
  template <class T>
  using checks = decltype(rules_of<T>(std::make_index_sequence<S>{}));
};

/// Pooling window over S spatial axes; channels pass through.
template <std::size_t S, class... Os>
struct pool_rule {
  using W = window<S, Os...>;
  static_assert(has_option<kernel_tag, Os...>, "pooling needs a window: kernel<...>");
  static constexpr std::array<dim_t, S + 2> rule(std::array<dim_t, S + 2> in) {
    std::array<dim_t, S + 2> out{in[0], in[1]};
    for (std::size_t i = 0; i < S; ++i) {
      rules::positive("pooling window must be positive, got {}", W::k[i]);
      out[2 + i] =
          rules::pool_out_dim(in[2 + i], W::k[i], W::s[i], W::d[i], W::pb[i], W::pe[i], W::ceil);
    }
    return out;
  }
  /// These rules on the fixed dims of an input of type T, for rules_check.
  template <class T, std::size_t... I>
  static auto rules_of(std::index_sequence<I...>)
      -> std::tuple<rule_on<rules::input_rank, S + 2, T::rank>,
                    rule_on<rules::pool_out_dim, static_dim<T>(2 + I), W::k[I], W::s[I], W::d[I],
                            W::pb[I], W::pe[I], W::ceil>...>;
  template <class T>
  using checks = decltype(rules_of<T>(std::make_index_sequence<S>{}));
};

}  // namespace detail

// Layer structs: the names that appear in diagnostics.
template <dim_t Cout, class... Os>
struct conv1d_layer : detail::conv_rule<1, Cout, Os...> {
  static constexpr std::string_view kind = "conv1d";
};
template <dim_t Cout, class... Os>
struct conv2d_layer : detail::conv_rule<2, Cout, Os...> {
  static constexpr std::string_view kind = "conv2d";
};
template <dim_t Cout, class... Os>
struct conv3d_layer : detail::conv_rule<3, Cout, Os...> {
  static constexpr std::string_view kind = "conv3d";
};
template <dim_t Cout, class... Os>
struct deconv2d_layer : detail::deconv_rule<2, Cout, Os...> {
  static constexpr std::string_view kind = "deconv2d";
};
template <class... Os>
struct max_pool_layer : detail::pool_rule<2, Os...> {
  static constexpr std::string_view kind = "max_pool";
};
template <class... Os>
struct avg_pool_layer : detail::pool_rule<2, Os...> {
  static constexpr std::string_view kind = "avg_pool";
};

namespace detail {

template <class Layer, std::size_t S, dim_t Cout, bool Transposed, class T>
auto conv_like(const T& x, const Weights& w, const std::string& given) {
  using W = typename Layer::W;
  constexpr bool ok = rules_check<Layer, typename Layer::template checks<T>>::ok;
  static_assert(T::layout != Layout::nhwc && T::layout != Layout::tnc,
                "convolution input must be channels-first (NCW, NCHW, NCDHW)");
  if constexpr (!ok) {
    return failed_layer{};  // rules_check has said why
  } else {
    using Out = output_t<Layer, T::dtype, T::layout, T>;
    auto s = x.state();
    const std::string name = node_name(*s, Layer::kind, W::name(given), w);
    const auto dims = run_rule<Layer>(name, x);
    require_known(Layer::kind, name, "input channels", x.dim(1));
    std::vector<dim_t> wd = Transposed ? std::vector<dim_t>{x.dim(1), Cout / W::g}
                                       : std::vector<dim_t>{Cout, x.dim(1) / W::g};
    for (auto k : W::k) wd.push_back(k);
    std::vector<std::string> in{x.value(),
                                take_weight(*s, w, name, name + ".weight", wd, T::dtype)};
    if (W::bias) in.push_back(take_weight(*s, w, name, name + ".bias", {Cout}, T::dtype));
    std::map<std::string, Attribute> a;
    W::attrs(a);
    a["group"] = W::g;
    if (Transposed) a["output_padding"] = to_vector(W::op);
    emit(*s, Transposed ? "ConvTranspose" : "Conv", name, std::move(in), std::move(a));
    return Out(s, name, dims);
  }
}

template <class Layer, class T>
auto pool_like(const T& x, const std::string& given, const char* op) {
  constexpr bool ok = rules_check<Layer, typename Layer::template checks<T>>::ok;
  if constexpr (!ok) {
    return failed_layer{};  // rules_check has said why
  } else {
    using Out = output_t<Layer, T::dtype, T::layout, T>;
    using W = typename Layer::W;
    auto s = x.state();
    const std::string name = node_name(*s, Layer::kind, W::name(given));
    const auto dims = run_rule<Layer>(name, x);
    std::map<std::string, Attribute> a;
    const bool max = std::string_view(op) == "MaxPool";
    W::attrs(a, max);
    a["ceil_mode"] = dim_t{W::ceil};
    if (!max) a["count_include_pad"] = dim_t{W::include_pad};
    emit(*s, op, name, {x.value()}, std::move(a));
    return Out(s, name, dims);
  }
}

}  // namespace detail

/// 2-D convolution, PyTorch's Conv2d: weights `<name>.weight` [Cout, C/group, kh, kw] and
/// `<name>.bias` [Cout] (unless no_bias). Options: kernel, stride, padding, dilation, group,
/// in_channels, no_bias.  `conv2d<64, kernel<7>, stride<2>, padding<3>, no_bias>(x, w, "conv1")`
template <dim_t Cout, class... Os, tensor_expr T>
auto conv2d(const T& x, const Weights& w, const std::string& name = "") {
  return detail::conv_like<conv2d_layer<Cout, Os...>, 2, Cout, false>(x, w, name);
}
/// 1-D convolution over [N,C,W].
template <dim_t Cout, class... Os, tensor_expr T>
auto conv1d(const T& x, const Weights& w, const std::string& name = "") {
  return detail::conv_like<conv1d_layer<Cout, Os...>, 1, Cout, false>(x, w, name);
}
/// 3-D convolution over [N,C,D,H,W].
template <dim_t Cout, class... Os, tensor_expr T>
auto conv3d(const T& x, const Weights& w, const std::string& name = "") {
  return detail::conv_like<conv3d_layer<Cout, Os...>, 3, Cout, false>(x, w, name);
}
/// Transposed 2-D convolution, PyTorch's ConvTranspose2d: weight [C, Cout/group, kh, kw].
/// Options as conv2d plus output_padding.
template <dim_t Cout, class... Os, tensor_expr T>
auto deconv2d(const T& x, const Weights& w, const std::string& name = "") {
  return detail::conv_like<deconv2d_layer<Cout, Os...>, 2, Cout, true>(x, w, name);
}

/// Max pooling: `max_pool<kernel<3>, stride<2>, padding<1>, ceil_mode>(x)`.
template <class... Os, tensor_expr T>
auto max_pool(const T& x, const std::string& name = "") {
  return detail::pool_like<max_pool_layer<Os...>>(x, name, "MaxPool");
}
/// Average pooling; padded elements are not counted unless count_include_pad is given.
template <class... Os, tensor_expr T>
auto avg_pool(const T& x, const std::string& name = "") {
  return detail::pool_like<avg_pool_layer<Os...>>(x, name, "AveragePool");
}

struct global_pool_layer {
  static constexpr std::string_view kind = "global_pool";
  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> in) {
    std::array<dim_t, R> out = in;
    for (std::size_t i = 2; i < R; ++i) out[i] = 1;
    return out;
  }
};

namespace detail {
template <class T>
auto global_pool(const T& x, const std::string& given, const char* op, std::string_view kind) {
  static_assert(T::rank >= 3, "global pooling input must be [N,C,spatial...]");
  using Out = output_t<global_pool_layer, T::dtype, T::layout, T>;
  auto s = x.state();
  const std::string name = node_name(*s, kind, given);
  emit(*s, op, name, {x.value()});
  return Out(s, name, global_pool_layer::rule(x.dims()));
}
}  // namespace detail

/// [N,C,H,W] -> [N,C,1,1] mean (PyTorch's AdaptiveAvgPool2d(1)).
template <tensor_expr T>
auto global_avg_pool(const T& x, const std::string& name = "") {
  return detail::global_pool(x, name, "GlobalAveragePool", "global_avg_pool");
}
template <tensor_expr T>
auto global_max_pool(const T& x, const std::string& name = "") {
  return detail::global_pool(x, name, "GlobalMaxPool", "global_max_pool");
}

/// PyTorch's AdaptiveAvgPool2d((OH, OW)), where each input length is a multiple of the output
/// length (then it is an average pool with window = stride = in / out).
template <dim_t OH, dim_t OW>
struct adaptive_avg_pool_layer {
  static constexpr std::string_view kind = "adaptive_avg_pool";
  static constexpr std::array<dim_t, 4> rule(std::array<dim_t, 4> in) {
    rules::adaptive_pool_window(in[2], OH);
    rules::adaptive_pool_window(in[3], OW);
    return {in[0], in[1], OH, OW};
  }
};
template <dim_t OH, dim_t OW = OH, tensor_expr T>
auto adaptive_avg_pool(const T& x, const std::string& given = "") {
  using L = adaptive_avg_pool_layer<OH, OW>;
  static_assert(T::rank == 4, "adaptive_avg_pool input must be [N,C,H,W]");
  constexpr bool ok =
      detail::rules_check<L, detail::rule_on<rules::adaptive_pool_window, T::static_dims[2], OH>,
                          detail::rule_on<rules::adaptive_pool_window, T::static_dims[3], OW>>::ok;
  using Out = detail::checked_output_t<ok, L, T::dtype, T::layout, T>;
  auto s = x.state();
  const std::string name = detail::node_name(*s, L::kind, given);
  const auto dims = detail::run_rule<L>(name, x);
  if (OH == 1 && OW == 1) {
    detail::emit(*s, "GlobalAveragePool", name, {x.value()});
    return Out(s, name, dims);
  }
  const dim_t kh =
      detail::checked(L::kind, name, [&] { return rules::adaptive_pool_window(x.dim(2), OH); });
  const dim_t kw =
      detail::checked(L::kind, name, [&] { return rules::adaptive_pool_window(x.dim(3), OW); });
  detail::require_known(L::kind, name, "input height and width", kh < 0 || kw < 0 ? kDynamic : 0);
  if (kh == 1 && kw == 1) {
    detail::emit(*s, "Identity", name, {x.value()});
    return Out(s, name, dims);
  }
  detail::emit(
      *s, "AveragePool", name, {x.value()},
      {{"kernel_shape", std::vector<dim_t>{kh, kw}}, {"strides", std::vector<dim_t>{kh, kw}}});
  return Out(s, name, dims);
}

// ---- normalization -------------------------------------------------------------------------

struct batch_norm_layer {
  static constexpr std::string_view kind = "batch_norm";
  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> in) {
    static_assert(R >= 2, "batch_norm input must be [N,C,...]");
    return in;
  }
};

/// PyTorch's BatchNorm (inference): weights `<name>.weight`, `.bias`, `.running_mean`,
/// `.running_var`, each [C]. Emits BatchNormalization. Like every layer, the name comes last:
/// `batch_norm(x, w, 1e-3, "bn1")`.
template <tensor_expr T>
T batch_norm(const T& x, const Weights& w, double eps, const std::string& given) {
  static_assert(T::rank >= 2, "batch_norm input must be [N,C,...]");
  auto s = x.state();
  const std::string name = detail::node_name(*s, batch_norm_layer::kind, given, w);
  detail::require_known(batch_norm_layer::kind, name, "channels", x.dim(1));
  const std::vector<dim_t> c{x.dim(1)};
  std::vector<std::string> in{x.value()};
  for (const char* p : {".weight", ".bias", ".running_mean", ".running_var"})
    in.push_back(detail::take_weight(*s, w, name, name + p, c, T::dtype));
  detail::emit(*s, "BatchNormalization", name, std::move(in), {{"epsilon", eps}});
  return T(s, name, x.dims());
}
/// batch_norm with PyTorch's eps, 1e-5.
template <tensor_expr T>
T batch_norm(const T& x, const Weights& w, const std::string& given) {
  return batch_norm(x, w, 1e-5, given);
}

/// A normalization over the last dim (layer_norm, rms_norm) of a declared width; kDynamic: the
/// input's last dim, whatever it is.
template <dim_t Width>
struct layer_norm_layer {
  static constexpr std::string_view kind = "layer_norm";
  static constexpr dim_t width = Width;
  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> in) {
    static_assert(R >= 1, "layer_norm input must have rank >= 1");
    rules::norm_width(Width, in[R - 1]);
    return in;
  }
};
template <dim_t Width>
struct rms_norm_layer : layer_norm_layer<Width> {
  static constexpr std::string_view kind = "rms_norm";
};

namespace detail {

/// LayerNormalization or RMSNormalization over the last dim, weights `<name>.weight` [W] (and
/// `<name>.bias` [W] when `bias`). The callers check the width and give the output type (Out), so
/// that a compile error names the function the user called and is short.
template <class L, class Out, tensor_expr T>
Out row_norm(const T& x, const Weights& w, const char* op, double eps, bool bias,
             const std::string& given) {
  static_assert(T::dtype == DType::f32 || T::dtype == DType::f16 || T::dtype == DType::bf16 ||
                    T::dtype == DType::f64,
                "layer_norm and rms_norm: the input must be float");
  auto s = x.state();
  const std::string name = node_name(*s, L::kind, given, w);
  const dim_t d =
      checked(L::kind, name, [&] { return rules::norm_width(L::width, x.dim(T::rank - 1)); });
  require_known(L::kind, name, "normalized width (last dim)", d);
  std::vector<std::string> in{x.value(), take_weight(*s, w, name, name + ".weight", {d}, T::dtype)};
  if (bias) in.push_back(take_weight(*s, w, name, name + ".bias", {d}, T::dtype));
  emit(*s, op, name, std::move(in), {{"axis", dim_t{-1}}, {"epsilon", eps}});
  return Out(s, name, x.dims());
}

}  // namespace detail

/// PyTorch's LayerNorm(Width) over the last dim: weights `<name>.weight` and `<name>.bias`, each
/// [Width] (no_bias: PyTorch's bias=False). Width, when given, is checked against the input's
/// last dim. Emits LayerNormalization: `layer_norm<64>(x, w, 1e-5, "norm1")`.
template <dim_t Width = kDynamic, class... Os, tensor_expr T>
auto layer_norm(const T& x, const Weights& w, double eps, const std::string& given = "") {
  static_assert(T::rank >= 1, "layer_norm input must have rank >= 1");
  using L = layer_norm_layer<Width>;
  constexpr bool ok =
      detail::rule_check<L, rules::norm_width, Width, T::static_dims[T::rank - 1]>::ok;
  using Out = detail::checked_output_t<ok, L, T::dtype, T::layout, T>;
  return detail::row_norm<L, Out>(x, w, "LayerNormalization", eps,
                                  !detail::has_option<detail::bias_tag, Os...>,
                                  detail::given_name<Os...>(given));
}
/// layer_norm with PyTorch's eps, 1e-5.
template <dim_t Width = kDynamic, class... Os, tensor_expr T>
auto layer_norm(const T& x, const Weights& w, const std::string& given = "") {
  static_assert(T::rank >= 1, "layer_norm input must have rank >= 1");
  using L = layer_norm_layer<Width>;
  constexpr bool ok =
      detail::rule_check<L, rules::norm_width, Width, T::static_dims[T::rank - 1]>::ok;
  using Out = detail::checked_output_t<ok, L, T::dtype, T::layout, T>;
  return detail::row_norm<L, Out>(x, w, "LayerNormalization", 1e-5,
                                  !detail::has_option<detail::bias_tag, Os...>,
                                  detail::given_name<Os...>(given));
}

/// RMS normalization over the last dim, x / sqrt(mean(x^2) + eps) * weight (PyTorch's RMSNorm):
/// weight `<name>.weight` [Width]. Emits RMSNormalization: `rms_norm<64>(x, w, 1e-6, "norm")`.
template <dim_t Width = kDynamic, class... Os, tensor_expr T>
auto rms_norm(const T& x, const Weights& w, double eps, const std::string& given = "") {
  static_assert(T::rank >= 1, "rms_norm input must have rank >= 1");
  using L = rms_norm_layer<Width>;
  constexpr bool ok =
      detail::rule_check<L, rules::norm_width, Width, T::static_dims[T::rank - 1]>::ok;
  using Out = detail::checked_output_t<ok, L, T::dtype, T::layout, T>;
  return detail::row_norm<L, Out>(x, w, "RMSNormalization", eps, false,
                                  detail::given_name<Os...>(given));
}

enum class ScaleMode { uniform, channel, elementwise };

struct scale_layer {
  static constexpr std::string_view kind = "scale";
};

/// TensorRT's scale layer: y = (x * scale + shift) ^ power, with one value (uniform), one per
/// channel, or one per element of [C,H,W]. Weights `<name>.scale` and `<name>.shift`, and
/// `<name>.power` when the map has it. Emits kiln's Scale op.
template <ScaleMode M, tensor_expr T>
T scale(const T& x, const Weights& w, const std::string& given) {
  static_assert(M == ScaleMode::uniform || T::rank >= 2, "scale per channel needs [N,C,...]");
  auto s = x.state();
  const std::string name = detail::node_name(*s, scale_layer::kind, given, w);
  std::vector<dim_t> d{1};
  if (M == ScaleMode::channel) {
    detail::require_known(scale_layer::kind, name, "channels", x.dim(1));
    d = {x.dim(1)};
  } else if (M == ScaleMode::elementwise) {
    d.clear();
    for (std::size_t i = 1; i < T::rank; ++i) {
      detail::require_known(scale_layer::kind, name, "dims after the batch", x.dim(i));
      d.push_back(x.dim(i));
    }
  }
  std::vector<std::string> in{x.value(),
                              detail::take_weight(*s, w, name, name + ".scale", d, T::dtype),
                              detail::take_weight(*s, w, name, name + ".shift", d, T::dtype)};
  if (!w.dry_run() && w.map().contains(w.resolve(name + ".power")))
    in.push_back(detail::take_weight(*s, w, name, name + ".power", d, T::dtype));
  const char* mode = M == ScaleMode::uniform   ? "uniform"
                     : M == ScaleMode::channel ? "channel"
                                               : "elementwise";
  detail::emit(*s, "Scale", name, std::move(in), {{"mode", std::string(mode)}});
  return T(s, name, x.dims());
}

template <dim_t Size>
struct lrn_layer {
  static constexpr std::string_view kind = "lrn";
  static constexpr dim_t size = detail::rule_check<lrn_layer, rules::lrn_size, Size>::ok ? Size : 1;
};

/// Local response normalization across channels (ONNX LRN; PyTorch's LocalResponseNorm).
template <dim_t Size, tensor_expr T>
T lrn(const T& x, double alpha = 1e-4, double beta = 0.75, double bias = 1.0,
      const std::string& given = "") {
  static_assert(T::rank >= 3, "lrn input must be [N,C,...]");
  constexpr dim_t size = lrn_layer<Size>::size;
  auto s = x.state();
  const std::string name = detail::node_name(*s, lrn_layer<Size>::kind, given);
  detail::emit(*s, "LRN", name, {x.value()},
               {{"size", size}, {"alpha", alpha}, {"beta", beta}, {"bias", bias}});
  return T(s, name, x.dims());
}

// ---- fully connected -----------------------------------------------------------------------

/// Fully connected layer (PyTorch's Linear, TensorRT's FullyConnected): [N, ...] -> [N, Out];
/// a rank > 2 input is flattened after the batch. Weights `<name>.weight` [Out, K] and
/// `<name>.bias` [Out] (unless no_bias). in_features<K> declares K, checked against the input.
template <dim_t Out, class... Os>
struct fully_connected_layer {
  static constexpr std::string_view kind = "fully_connected";
  static constexpr dim_t declared =
      detail::pick<detail::in_size_tag, in_features<kDynamic>, Os...>::type::v[0];
  template <std::size_t R>
  static constexpr std::array<dim_t, 2> rule(std::array<dim_t, R> in) {
    static_assert(R >= 2, "fully_connected input must be [N, features...]");
    rules::positive("output features must be positive, got {}", Out);
    return {in[0], Out};
  }
  /// Features after flattening all but the batch (kDynamic if any is dynamic).
  template <std::size_t R>
  static constexpr dim_t flat(std::array<dim_t, R> in) {
    dim_t k = 1;
    for (std::size_t i = 1; i < R; ++i)
      k = rules::known(k) && rules::known(in[i]) ? k * in[i] : kDynamic;
    return k;
  }
  template <std::size_t R>
  static constexpr dim_t features(std::array<dim_t, R> in) {
    return rules::fc_in_features(declared, flat(in));
  }
};

template <dim_t Out, class... Os, tensor_expr T>
auto fully_connected(const T& x, const Weights& w, const std::string& given = "") {
  using L = fully_connected_layer<Out, Os...>;
  static_assert(T::rank >= 2, "fully_connected input must be [N, features...]");
  constexpr bool features_ok =
      detail::rule_check<L, rules::fc_in_features, L::declared, L::flat(T::static_dims)>::ok;
  using R = detail::checked_output_t<features_ok, L, T::dtype, Layout::nc, T>;
  auto s = x.state();
  const std::string name = detail::node_name(*s, L::kind, detail::given_name<Os...>(given), w);
  const dim_t k = detail::checked(L::kind, name, [&] { return L::features(x.dims()); });
  detail::require_known(L::kind, name, "input features", k);
  std::string a = x.value();
  if (T::rank > 2)
    a = detail::emit(*s, "Flatten", s->fresh_name(name + "/flatten"), {a}, {{"axis", dim_t{1}}});
  std::vector<std::string> in{
      a, detail::take_weight(*s, w, name, name + ".weight", {Out, k}, T::dtype)};
  if (!detail::has_option<detail::bias_tag, Os...>)
    in.push_back(detail::take_weight(*s, w, name, name + ".bias", {Out}, T::dtype));
  detail::emit(*s, "Gemm", name, std::move(in), {{"transB", dim_t{1}}});
  return R(s, name, std::array<dim_t, 2>{x.dim(0), Out});
}

// ---- embedding -----------------------------------------------------------------------------

template <dim_t Vocab, dim_t Width>
struct embedding_layer {
  static constexpr std::string_view kind = "embedding";
  /// ids [...] -> [..., Width]
  template <std::size_t R>
  static constexpr std::array<dim_t, R + 1> rule(std::array<dim_t, R> ids) {
    rules::positive("vocabulary size must be positive, got {}", Vocab);
    rules::positive("embedding width must be positive, got {}", Width);
    std::array<dim_t, R + 1> out{};
    for (std::size_t i = 0; i < R; ++i) out[i] = ids[i];
    out[R] = Width;
    return out;
  }
};

/// PyTorch's Embedding(Vocab, Width): the rows of weight `<name>.weight` [Vocab, Width] (of
/// element type D) that integer ids [...] pick, [..., Width]. Emits Gather (axis 0); an id out of
/// [-Vocab, Vocab) is an error when the network runs. `embedding<30522, 768>(ids, w, "tok")`.
template <dim_t Vocab, dim_t Width, DType D = DType::f32, class... Os, tensor_expr T>
auto embedding(const T& ids, const Weights& w, const std::string& given = "") {
  using L = embedding_layer<Vocab, Width>;
  static_assert(T::dtype == DType::i64 || T::dtype == DType::i32,
                "embedding: the ids must be int64 or int32");
  using Out = detail::output_t<L, D, Layout::any, T>;
  auto s = ids.state();
  const std::string name = detail::node_name(*s, L::kind, detail::given_name<Os...>(given), w);
  const auto dims = detail::run_rule<L>(name, ids);
  const std::string table = detail::take_weight(*s, w, name, name + ".weight", {Vocab, Width}, D);
  detail::emit(*s, "Gather", name, {table, ids.value()}, {{"axis", dim_t{0}}});
  return Out(s, name, dims);
}

// ---- weights as tensors ----------------------------------------------------------------------

/// A weight of the map as a tensor of fixed dims, for networks that compute with their parameters
/// themselves: the rows of a packed projection (`slice<0, 0, 64>(w_qkv)`), a learned position
/// table added to the tokens. `weight<192, 64>(w, "self_attn.in_proj_weight")` binds the map's
/// entry (in the scope of `w`) and checks it like any layer's weight: a missing name or a wrong
/// shape is reported with the network's other weight problems. The tensor is a graph weight, so
/// what the network computes from it alone (slices, transposes) is folded when a plan is built.
template <dim_t... Ds>
Tensor<DType::f32, Layout::any, Ds...> weight(const Weights& w, const std::string& name) {
  static_assert(sizeof...(Ds) > 0 && ((Ds > 0) && ...),
                "weight<dims...>: give every dim of the weight, fixed and positive");
  auto s = std::make_shared<detail::NetState>();
  const std::string full = w.scoped(name);
  const std::string v = detail::take_weight(*s, w, full, full, {Ds...}, DType::f32);
  return {s, v, {Ds...}};
}

// ---- softmax -------------------------------------------------------------------------------

template <dim_t Axis>
struct softmax_layer {
  static constexpr std::string_view kind = "softmax";
  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> in) {
    rules::normalize_axis(Axis, static_cast<dim_t>(R));
    return in;
  }
};
template <dim_t Axis>
struct log_softmax_layer {
  static constexpr std::string_view kind = "log_softmax";
  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> in) {
    rules::normalize_axis(Axis, static_cast<dim_t>(R));
    return in;
  }
};

/// Softmax along Axis (default: the last).
template <dim_t Axis = -1, tensor_expr T>
T softmax(const T& x, const std::string& given = "") {
  (void)detail::rule_check<softmax_layer<Axis>, rules::normalize_axis, Axis, T::rank>::ok;
  auto s = x.state();
  const std::string name = detail::node_name(*s, softmax_layer<Axis>::kind, given);
  detail::emit(*s, "Softmax", name, {x.value()}, {{"axis", Axis}});
  return T(s, name, x.dims());
}
template <dim_t Axis = -1, tensor_expr T>
T log_softmax(const T& x, const std::string& given = "") {
  (void)detail::rule_check<log_softmax_layer<Axis>, rules::normalize_axis, Axis, T::rank>::ok;
  auto s = x.state();
  const std::string name = detail::node_name(*s, log_softmax_layer<Axis>::kind, given);
  detail::emit(*s, "LogSoftmax", name, {x.value()}, {{"axis", Axis}});
  return T(s, name, x.dims());
}

}  // namespace kiln::dsl
