// Reference kernels of the tensor op family, part 2: indexing (Gather*, Scatter*, OneHot,
// NonZero, Compress, ReverseSequence, Trilu, EyeLike, Range).
#include <cmath>

#include <fmt/format.h>

#include "families.hpp"
#include "ir/ops/tensor_common.hpp"
#include "tensor_util.hpp"

namespace kiln::reference {

namespace {

using namespace tensor_detail;
namespace tr = ops::tensor_rules;

void gather(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const i64 r = static_cast<i64>(x.rank());
  if (r == 0) ctx.fail("cannot gather from a scalar");
  const i64 axis = rules::normalize_axis(ctx.node.attr_int("axis", 0), r);
  const auto idx = indices.to_int64s();
  std::vector<i64> dims(x.dims().begin(), x.dims().begin() + axis);
  dims.insert(dims.end(), indices.dims().begin(), indices.dims().end());
  dims.insert(dims.end(), x.dims().begin() + axis + 1, x.dims().end());
  i64 outer = 1, inner = 1;
  for (i64 d = 0; d < axis; ++d) outer *= x.dim(d);
  for (i64 d = axis + 1; d < r; ++d) inner *= x.dim(d);
  const i64 n = x.dim(axis);
  Tensor out(x.dtype(), dims);
  const std::size_t es = dtype_size(x.dtype());
  const std::size_t block = static_cast<std::size_t>(inner) * es;
  std::byte* dst = out.raw();
  for (i64 o = 0; o < outer; ++o)
    for (i64 j : idx) {
      const i64 k = wrap_index(ctx, j, n, "index");
      std::memcpy(dst, x.raw() + static_cast<std::size_t>(o * n + k) * block, block);
      dst += block;
    }
  ctx.set(0, out);
}

/// GatherElements' and ScatterElements' walk: for the k-th element of `indices` (row-major), the
/// offset in `x` of the element it names (its own coordinates, with the one along the node's axis
/// read from `indices`). Ranks are checked by the caller.
template <class F>
void for_each_element_index(const KernelContext& ctx, const Tensor& x, const Tensor& indices,
                            F&& f) {
  const i64 r = static_cast<i64>(x.rank());
  const i64 axis = rules::normalize_axis(ctx.node.attr_int("axis", 0), r);
  const auto idx = indices.to_int64s();
  const auto st = strides_of(x.dims());
  i64 k = 0;
  for_each_index(indices.dims(), [&](const std::vector<i64>& at) {
    i64 off = 0;
    for (i64 a = 0; a < r; ++a) {
      i64 i = at[a];
      if (a == axis)
        i = wrap_index(ctx, idx[k], x.dim(a), "index");
      else if (i >= x.dim(a))
        ctx.fail(fmt::format("indices dim {} exceeds data dim {}", a, x.dim(a)));
      off += i * st[a];
    }
    f(k++, off);
  });
}

void gather_elements(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const i64 r = static_cast<i64>(x.rank());
  if (static_cast<i64>(indices.rank()) != r || r == 0)
    ctx.fail(fmt::format("indices {} must have the rank of data {}", indices.type_string(),
                         x.type_string()));
  Tensor out(x.dtype(), indices.dims());
  for_each_element_index(ctx, x, indices, [&](i64 k, i64 off) { copy_element(x, off, out, k); });
  ctx.set(0, out);
}

void gather_nd(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const i64 r = static_cast<i64>(x.rank()), q = static_cast<i64>(indices.rank());
  const i64 b = ctx.node.attr_int("batch_dims", 0);
  if (r < 1 || q < 1 || b < 0 || b >= std::min(r, q))
    ctx.fail(fmt::format("batch_dims {} invalid for data {} and indices {}", b, x.type_string(),
                         indices.type_string()));
  const i64 k = indices.dim(q - 1);
  if (k > r - b)
    ctx.fail(fmt::format("index tuples of length {} for data {} with batch_dims {}", k,
                         x.type_string(), b));
  for (i64 i = 0; i < b; ++i)
    if (x.dim(i) != indices.dim(i)) ctx.fail("batch dims of data and indices differ");
  std::vector<i64> dims(indices.dims().begin(), indices.dims().end() - 1);
  dims.insert(dims.end(), x.dims().begin() + b + k, x.dims().end());
  i64 batch = 1, per_batch = 1, slice = 1;
  for (i64 i = 0; i < b; ++i) batch *= x.dim(i);
  for (i64 i = b; i < q - 1; ++i) per_batch *= indices.dim(i);
  for (i64 i = b + k; i < r; ++i) slice *= x.dim(i);
  const auto st = strides_of(x.dims());
  const i64 data_batch = b > 0 ? st[b - 1] : x.numel();
  const auto idx = indices.to_int64s();
  Tensor out(x.dtype(), dims);
  const std::size_t es = dtype_size(x.dtype());
  std::byte* dst = out.raw();
  for (i64 bi = 0; bi < batch; ++bi)
    for (i64 j = 0; j < per_batch; ++j) {
      const i64* tuple = idx.data() + (bi * per_batch + j) * k;
      i64 off = bi * data_batch;
      for (i64 t = 0; t < k; ++t)
        off += wrap_index(ctx, tuple[t], x.dim(b + t), "index") * st[b + t];
      std::memcpy(dst, x.raw() + static_cast<std::size_t>(off) * es,
                  static_cast<std::size_t>(slice) * es);
      dst += static_cast<std::size_t>(slice) * es;
    }
  ctx.set(0, out);
}

enum class Reduction { none, add, mul, max, min };

Reduction reduction_of(const KernelContext& ctx) {
  const std::string s = ctx.node.attr_string("reduction", "none");
  if (s == "none") return Reduction::none;
  if (s == "add") return Reduction::add;
  if (s == "mul") return Reduction::mul;
  if (s == "max") return Reduction::max;
  if (s == "min") return Reduction::min;
  ctx.unsupported("attribute 'reduction' = '" + s + "' (supported: none, add, mul, max, min)");
}

/// dst[to] = reduce(dst[to], src[from]) in the dtype's compute type.
void scatter_element(Reduction red, const Tensor& src, i64 from, Tensor& dst, i64 to) {
  if (red == Reduction::none) {
    copy_element(src, from, dst, to);
    return;
  }
  visit_dtype(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* d = dst.data<T>();
    const auto a = to_compute(d[to]);
    const auto u = to_compute(src.data<T>()[from]);
    using C = std::remove_const_t<decltype(a)>;
    C v{};
    switch (red) {
      case Reduction::add: v = static_cast<C>(a + u); break;
      case Reduction::mul: v = static_cast<C>(a * u); break;
      case Reduction::max: v = a < u ? u : a; break;
      default: v = u < a ? u : a; break;
    }
    d[to] = from_compute<T>(v);
  });
}

void scatter_elements(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const Tensor& upd = ctx.in(2);
  const i64 r = static_cast<i64>(x.rank());
  if (static_cast<i64>(indices.rank()) != r || indices.dims() != upd.dims() || r == 0)
    ctx.fail(
        fmt::format("data {}, indices {} and updates {} must have one rank, indices and "
                    "updates one shape",
                    x.type_string(), indices.type_string(), upd.type_string()));
  if (upd.dtype() != x.dtype()) ctx.fail("updates and data dtypes differ");
  const Reduction red = reduction_of(ctx);
  Tensor out = x.clone();
  for_each_element_index(ctx, x, indices,
                         [&](i64 k, i64 off) { scatter_element(red, upd, k, out, off); });
  ctx.set(0, out);
}

void scatter_nd(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const Tensor& upd = ctx.in(2);
  const i64 r = static_cast<i64>(x.rank()), q = static_cast<i64>(indices.rank());
  if (r < 1 || q < 1) ctx.fail("data and indices must have rank >= 1");
  if (upd.dtype() != x.dtype()) ctx.fail("updates and data dtypes differ");
  const i64 k = indices.dim(q - 1);
  if (k > r) ctx.fail(fmt::format("index tuples of length {} for data of rank {}", k, r));
  std::vector<i64> want(indices.dims().begin(), indices.dims().end() - 1);
  want.insert(want.end(), x.dims().begin() + k, x.dims().end());
  if (upd.dims() != want)
    ctx.fail(fmt::format("updates has dims {}, expected {}", dims_to_string(upd.dims()),
                         dims_to_string(want)));
  const Reduction red = reduction_of(ctx);
  i64 slice = 1;
  for (i64 i = k; i < r; ++i) slice *= x.dim(i);
  const i64 tuples = product(std::vector<i64>(indices.dims().begin(), indices.dims().end() - 1));
  const auto st = strides_of(x.dims());
  const auto idx = indices.to_int64s();
  Tensor out = x.clone();
  for (i64 j = 0; j < tuples; ++j) {
    i64 off = 0;
    for (i64 t = 0; t < k; ++t) off += wrap_index(ctx, idx[j * k + t], x.dim(t), "index") * st[t];
    for (i64 e = 0; e < slice; ++e) scatter_element(red, upd, j * slice + e, out, off + e);
  }
  ctx.set(0, out);
}

void range(KernelContext& ctx) {
  const Tensor& s = ctx.in(0);
  const DType t = s.dtype();
  if (ctx.in(1).dtype() != t || ctx.in(2).dtype() != t)
    ctx.fail("start, limit and delta must have one dtype");
  if (s.numel() != 1 || ctx.in(1).numel() != 1 || ctx.in(2).numel() != 1)
    ctx.fail("start, limit and delta must be scalars");
  if (t == DType::boolean) ctx.fail("Range does not accept bool");
  Tensor out;
  visit_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, bool>) {
      using C = compute_t<T>;
      const C start = to_compute(s.data<T>()[0]);
      const C limit = to_compute(ctx.in(1).data<T>()[0]);
      const C delta = to_compute(ctx.in(2).data<T>()[0]);
      const i64 n = tr::range_count(static_cast<double>(start), static_cast<double>(limit),
                                    static_cast<double>(delta));
      out = Tensor(t, {n});
      T* p = out.data<T>();
      // As numpy's arange: start + i * delta in the compute type.
      for (i64 i = 0; i < n; ++i)
        p[i] = from_compute<T>(static_cast<C>(start + static_cast<C>(i) * delta));
    }
  });
  ctx.set(0, out);
}

void trilu(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  if (x.rank() < 2) ctx.fail(fmt::format("input must have rank >= 2, got {}", x.type_string()));
  const i64 k = ctx.has(1) ? ctx.in(1).to_int64s().at(0) : 0;
  const bool upper = ctx.node.attr_int("upper", 1) != 0;
  const i64 rows = x.dim(x.rank() - 2), cols = x.dim(x.rank() - 1);
  const i64 mats = rows * cols == 0 ? 0 : x.numel() / (rows * cols);
  Tensor out = x.clone();
  const std::size_t es = dtype_size(x.dtype());
  for (i64 m = 0; m < mats; ++m)
    for (i64 i = 0; i < rows; ++i)
      for (i64 j = 0; j < cols; ++j) {
        const bool keep = upper ? j - i >= k : j - i <= k;
        if (!keep)
          std::memset(out.raw() + static_cast<std::size_t>((m * rows + i) * cols + j) * es, 0, es);
      }
  ctx.set(0, out);
}

void onehot(KernelContext& ctx) {
  const Tensor& indices = ctx.in(0);
  const Tensor& depth_t = ctx.in(1);
  const Tensor& values = ctx.in(2);
  if (depth_t.numel() != 1) ctx.fail("depth must hold one value");
  if (values.numel() != 2)
    ctx.fail(fmt::format("values must be [off, on], got {}", values.type_string()));
  const i64 depth = static_cast<i64>(std::floor(depth_t.get(0)));
  if (depth < 1) ctx.fail(fmt::format("depth must be positive, got {}", depth));
  const i64 r = static_cast<i64>(indices.rank());
  const i64 axis = rules::normalize_axis(ctx.node.attr_int("axis", -1), r + 1);
  std::vector<i64> dims(indices.dims().begin(), indices.dims().begin() + axis);
  dims.push_back(depth);
  dims.insert(dims.end(), indices.dims().begin() + axis, indices.dims().end());
  i64 outer = 1, inner = 1;
  for (i64 d = 0; d < axis; ++d) outer *= indices.dim(d);
  for (i64 d = axis; d < r; ++d) inner *= indices.dim(d);
  const auto idx = indices.to_doubles();
  Tensor out(values.dtype(), dims);
  for (i64 o = 0; o < outer; ++o)
    for (i64 d = 0; d < depth; ++d)
      for (i64 i = 0; i < inner; ++i) {
        i64 v = static_cast<i64>(idx[o * inner + i]);
        if (v < 0) v += depth;
        copy_element(values, v == d ? 1 : 0, out, (o * depth + d) * inner + i);
      }
  ctx.set(0, out);
}

void eyelike(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  if (x.rank() != 2) ctx.fail(fmt::format("input must be 2-D, got {}", x.type_string()));
  DType t = x.dtype();
  if (ctx.node.has_attr("dtype")) {
    try {
      t = tr::dtype_from_onnx(ctx.node.attr_int("dtype"));
    } catch (const UnsupportedError& e) {
      ctx.unsupported(std::string("attribute 'dtype': ") + e.what());
    }
  }
  const i64 k = ctx.node.attr_int("k", 0);
  Tensor out(t, x.dims());
  for (i64 i = 0; i < x.dim(0); ++i) {
    const i64 j = i + k;
    if (j >= 0 && j < x.dim(1)) out.set(i * x.dim(1) + j, 1.0);
  }
  ctx.set(0, out);
}

void nonzero(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const std::size_t es = dtype_size(x.dtype());
  std::vector<std::vector<i64>> hits;
  const std::byte zero[8] = {};
  i64 k = 0;
  const bool is_fp = is_float(x.dtype());
  for_each_index(x.dims(), [&](const std::vector<i64>& at) {
    // Floats: -0.0 is zero too; compare values. Others: any non-zero byte.
    const bool nz = is_fp ? x.get(k) != 0.0
                          : std::memcmp(x.raw() + static_cast<std::size_t>(k) * es, zero, es) != 0;
    if (nz) hits.push_back(at);
    ++k;
  });
  if (x.rank() == 0) {  // a scalar: numpy treats it as 1-D
    ctx.set(0, Tensor(DType::i64, {1, static_cast<i64>(hits.size())}));
    return;
  }
  const i64 n = static_cast<i64>(hits.size()), r = static_cast<i64>(x.rank());
  Tensor out(DType::i64, {r, n});
  i64* p = out.data<i64>();
  for (i64 j = 0; j < n; ++j)
    for (i64 a = 0; a < r; ++a) p[a * n + j] = hits[j][a];
  ctx.set(0, out);
}

void compress(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& cond = ctx.in(1);
  if (cond.rank() != 1) ctx.fail(fmt::format("condition must be 1-D, got {}", cond.type_string()));
  Tensor src = x;
  i64 axis = 0;
  if (ctx.node.has_attr("axis"))
    axis = rules::normalize_axis(ctx.node.attr_int("axis"), static_cast<i64>(x.rank()));
  else
    src = x.reshaped({x.numel()});
  const i64 n = src.dim(axis);
  if (cond.numel() > n)
    ctx.fail(fmt::format("condition has {} entries, the axis only {}", cond.numel(), n));
  std::vector<i64> keep;
  for (i64 i = 0; i < cond.numel(); ++i)
    if (cond.get(i) != 0.0) keep.push_back(i);
  std::vector<i64> dims = src.dims();
  dims[axis] = static_cast<i64>(keep.size());
  i64 outer = 1, inner = 1;
  for (i64 d = 0; d < axis; ++d) outer *= src.dim(d);
  for (i64 d = axis + 1; d < static_cast<i64>(src.rank()); ++d) inner *= src.dim(d);
  Tensor out(x.dtype(), dims);
  const std::size_t block = static_cast<std::size_t>(inner) * dtype_size(x.dtype());
  std::byte* dst = out.raw();
  for (i64 o = 0; o < outer; ++o)
    for (i64 j : keep) {
      std::memcpy(dst, src.raw() + static_cast<std::size_t>(o * n + j) * block, block);
      dst += block;
    }
  ctx.set(0, out);
}

void reverse_sequence(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const i64 r = static_cast<i64>(x.rank());
  if (r < 2) ctx.fail(fmt::format("input must have rank >= 2, got {}", x.type_string()));
  const i64 b = rules::normalize_axis(ctx.node.attr_int("batch_axis", 1), r);
  const i64 t = rules::normalize_axis(ctx.node.attr_int("time_axis", 0), r);
  if (b == t) ctx.fail("batch_axis and time_axis must differ");
  const auto lens = ctx.in(1).to_int64s();
  if (static_cast<i64>(lens.size()) != x.dim(b))
    ctx.fail(fmt::format("sequence_lens has {} entries, the batch axis {}", lens.size(), x.dim(b)));
  for (i64 l : lens)
    if (l < 0 || l > x.dim(t))
      ctx.fail(fmt::format("sequence length {} out of range [0, {}]", l, x.dim(t)));
  const auto st = strides_of(x.dims());
  Tensor out(x.dtype(), x.dims());
  i64 k = 0;
  for_each_index(x.dims(), [&](const std::vector<i64>& at) {
    const i64 len = lens[at[b]];
    i64 off = k;
    if (at[t] < len) off += (len - 1 - 2 * at[t]) * st[t];
    copy_element(x, off, out, k++);
  });
  ctx.set(0, out);
}

}  // namespace

void register_tensor_index(KernelRegistry& r) {
  r.add("Gather", gather);
  r.add("GatherElements", gather_elements);
  r.add("GatherND", gather_nd);
  r.add("ScatterElements", scatter_elements);
  r.add("ScatterND", scatter_nd);
  r.add("Range", range);
  r.add("Trilu", trilu);
  r.add("OneHot", onehot);
  r.add("EyeLike", eyelike);
  r.add("NonZero", nonzero);
  r.add("Compress", compress);
  r.add("ReverseSequence", reverse_sequence);
}

}  // namespace kiln::reference
