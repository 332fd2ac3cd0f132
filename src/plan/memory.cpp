// Activation memory planning: one arena; each value lives in a buffer (its own, its base's for a
// view, its concat's for a slice, or a dying input's when written in place); buffers whose
// lifetimes do not overlap share bytes. Buffers are placed largest first at the lowest offset
// that no live buffer occupies (first fit), which is what TensorRT-style planners do.
#include <algorithm>
#include <functional>
#include <set>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/ir/memory.hpp"
#include "kiln/plan/plan.hpp"

namespace kiln::plan {

using i64 = std::int64_t;

std::int64_t PlannedValue::bytes() const {
  if (sized_at_run_time()) return 0;
  return product(dims) * static_cast<i64>(dtype_size(dtype));
}

namespace {

std::vector<i64> contiguous_strides(const std::vector<i64>& dims) {
  std::vector<i64> s(dims.size(), 1);
  for (std::size_t i = dims.size(); i-- > 1;) s[i - 1] = s[i] * dims[i];
  return s;
}

bool is_contiguous(const std::vector<i64>& dims, const std::vector<i64>& strides) {
  const auto c = contiguous_strides(dims);
  for (std::size_t i = 0; i < dims.size(); ++i)
    if (dims[i] != 1 && strides[i] != c[i]) return false;
  return true;
}

/// Elements spanned from element 0 to the last one, inclusive.
i64 span_of(const std::vector<i64>& dims, const std::vector<i64>& strides) {
  i64 s = 1;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 0) return 0;
    s += (dims[i] - 1) * strides[i];
  }
  return s;
}

i64 align_up(i64 v, i64 a) { return a <= 1 ? v : (v + a - 1) / a * a; }

struct Lay {
  std::string buffer;  // the value whose buffer it lives in, before in-place merging
  i64 elem_off = 0;
  std::vector<i64> strides;
  std::string how = "own";
};

/// Inputs of a step whose buffer output 0 may take over: elementwise reads of the same type.
std::vector<std::size_t> in_place_candidates(const Node& n, const Target& t, const Graph& g) {
  std::vector<std::size_t> c;
  if (n.outputs.size() != 1 || n.outputs[0].empty()) return c;
  const TensorType& out = g.type_of(n.outputs[0]);
  auto same = [&](std::size_t k) {
    return n.has_input(k) && !g.weights.count(n.inputs[k]) && g.type_of(n.inputs[k]) == out;
  };
  if (t.is_pointwise(n.op)) {
    for (std::size_t k = 0; k < n.inputs.size(); ++k)
      if (same(k)) c.push_back(k);
    return c;
  }
  if (!is_fused(n)) return c;
  const FusedBody body = fused_body(n);
  std::set<std::size_t> read_elementwise, read_otherwise;
  for (const Node& p : body.parts)
    for (const auto& in : p.inputs)
      if (!in.empty() && in[0] == '$') {
        const std::size_t k = std::stoul(in.substr(1));
        (t.is_pointwise(p.op) ? read_elementwise : read_otherwise).insert(k);
      }
  for (std::size_t k : read_elementwise)
    if (!read_otherwise.count(k) && same(k)) c.push_back(k);
  return c;
}

}  // namespace

bool PlannedValue::contiguous() const { return is_contiguous(dims, strides); }

MemoryPlan plan_memory(const Graph& g, const Target& t, std::vector<std::size_t>* steps_out) {
  std::map<std::string, Lay> lay;
  auto dims_of = [&](const std::string& v) {
    const TensorType& tt = g.type_of(v);
    if (!tt.shape.is_static())
      throw ShapeError(
          fmt::format("cannot plan memory: value '{}' has the shape {}, not static "
                      "(build with concrete input dims)",
                      v, tt.shape.to_string()));
    return tt.shape.values();
  };
  std::set<std::string> graph_outputs(g.outputs.begin(), g.outputs.end());
  std::set<std::string> graph_inputs;
  for (const auto& i : g.inputs) graph_inputs.insert(i.name);
  // A step's output whose dims depend on data (the plan's inputs are static): held apart.
  auto at_run_time = [&](const std::string& v) {
    return !v.empty() && !graph_inputs.count(v) && !g.type_of(v).shape.is_static();
  };
  std::map<std::string, std::size_t> consumers;
  for (const auto& n : g.nodes)
    for (const auto& in : n.inputs)
      if (!in.empty()) ++consumers[in];

  // 1. Concats written in place: each input a slice of the output (outer concats first, so that
  //    a concat feeding another concat is itself a slice).
  std::set<std::size_t> elided;
  for (std::size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    if (!t.concat_in_place || n.op != "Concat" || n.attr_int(kConcatInPlaceAttr, 0) == 0) continue;
    const std::string& out = n.outputs[0];
    if (at_run_time(out)) continue;
    const auto odims = dims_of(out);
    Lay lo = lay.count(out) ? lay[out] : Lay{out, 0, contiguous_strides(odims), "own"};
    i64 axis = n.attr_int("axis", 0);
    if (axis < 0) axis += static_cast<i64>(odims.size());
    if (axis < 0 || axis >= static_cast<i64>(odims.size())) continue;
    std::map<std::string, Lay> slices;
    bool ok = true;
    i64 start = 0;
    for (const auto& in : n.inputs) {
      const auto p = g.producer(in);
      if (in.empty() || !p || slices.count(in) || lay.count(in) || graph_outputs.count(in) ||
          at_run_time(in) || g.nodes[*p].attr_int(kViewAttr, 0) != 0) {
        ok = false;
        break;
      }
      const auto idims = dims_of(in);
      Lay li{lo.buffer, lo.elem_off + start * lo.strides[static_cast<std::size_t>(axis)],
             lo.strides, "slice of " + out};
      const bool contiguous = is_contiguous(idims, li.strides);
      if (!contiguous && !(t.strided_output && (t.strided_input || consumers[in] == 1))) {
        ok = false;
        break;
      }
      slices[in] = li;
      start += idims[static_cast<std::size_t>(axis)];
    }
    if (!ok) continue;
    lay[out] = lo;
    for (auto& [k, v] : slices) lay[k] = v;
    elided.insert(i);
  }

  // 2. Views of contiguous values; everything else is a step.
  std::vector<std::size_t> steps;
  std::map<std::string, int> def_step;
  std::map<std::string, std::string> split_base;  // a split's slice -> the split's input
  for (const auto& i : g.inputs) {
    dims_of(i.name);
    def_step[i.name] = -1;
    if (!lay.count(i.name))
      lay[i.name] = Lay{i.name, 0, contiguous_strides(dims_of(i.name)), "own"};
  }
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (elided.count(i)) {  // complete once its last input is written
      int d = -1;
      for (const auto& in : n.inputs) d = std::max(d, def_step.at(in));
      def_step[n.outputs[0]] = d;
      continue;
    }
    const int step = static_cast<int>(steps.size());
    bool dynamic = false;
    for (const auto& v : n.inputs) dynamic |= at_run_time(v);
    for (const auto& v : n.outputs) dynamic |= at_run_time(v);
    if (!dynamic && t.split_in_place && n.op == "Split" && n.attr_int(kSplitInPlaceAttr, 0) != 0 &&
        n.has_input(0) && lay.count(n.inputs[0])) {
      // Each output a slice of the input, at its start along the axis, with the input's strides.
      const Lay base = lay[n.inputs[0]];
      const auto bdims = dims_of(n.inputs[0]);
      i64 axis = n.attr_int("axis", 0);
      if (axis < 0) axis += static_cast<i64>(bdims.size());
      bool ok = axis >= 0 && axis < static_cast<i64>(bdims.size());
      i64 total = 0;
      for (const auto& o : n.outputs) {
        if (!ok || o.empty() || lay.count(o) || graph_outputs.count(o)) {
          ok = false;
          break;
        }
        const auto od = dims_of(o);
        for (std::size_t d = 0; d < od.size() && ok; ++d)
          ok = od.size() == bdims.size() && (static_cast<i64>(d) == axis || od[d] == bdims[d]);
        if (ok) total += od[static_cast<std::size_t>(axis)];
      }
      if (ok && total == bdims[static_cast<std::size_t>(axis)]) {
        i64 start = 0;
        for (const auto& o : n.outputs) {
          lay[o] =
              Lay{base.buffer, base.elem_off + start * base.strides[static_cast<std::size_t>(axis)],
                  base.strides, "slice of " + n.inputs[0]};
          start += dims_of(o)[static_cast<std::size_t>(axis)];
          def_step[o] = step;  // made where its first reader runs at the latest
          split_base[o] = n.inputs[0];
        }
        continue;
      }
    }
    if (!dynamic && t.view_ops && n.attr_int(kViewAttr, 0) != 0 && n.outputs.size() == 1 &&
        n.has_input(0) && lay.count(n.inputs[0]) && !lay.count(n.outputs[0])) {
      const Lay& base = lay[n.inputs[0]];
      const auto bdims = dims_of(n.inputs[0]);
      if (is_contiguous(bdims, base.strides)) {
        lay[n.outputs[0]] =
            Lay{base.buffer, base.elem_off, contiguous_strides(dims_of(n.outputs[0])),
                "view of " + n.inputs[0]};
        def_step[n.outputs[0]] = step;  // a view is made where its first reader runs at the latest
        continue;
      }
    }
    steps.push_back(i);
    for (const auto& o : n.outputs) {
      if (o.empty()) continue;
      def_step[o] = step;
      if (!lay.count(o))
        lay[o] = at_run_time(o) ? Lay{o, 0, {}, PlannedValue::kSizedAtRunTime}
                                : Lay{o, 0, contiguous_strides(dims_of(o)), "own"};
    }
  }
  const int nsteps = static_cast<int>(steps.size());

  // 3. Lifetimes of values, then of buffers.
  std::map<std::string, int> last_use;
  for (const auto& [v, d] : def_step) last_use[v] = d;
  // A view's reader keeps its base alive: walk views back to their base.
  std::map<std::string, std::string> view_base;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (n.outputs.size() == 1 && lay.count(n.outputs[0]) &&
        lay[n.outputs[0]].how.rfind("view of ", 0) == 0)
      view_base[n.outputs[0]] = n.inputs[0];
  }
  view_base.insert(split_base.begin(), split_base.end());  // a slice keeps its base alive too
  for (int s = 0; s < nsteps; ++s)
    for (const auto& in : g.nodes[steps[static_cast<std::size_t>(s)]].inputs)
      if (!in.empty() && def_step.count(in)) last_use[in] = std::max(last_use[in], s);
  for (const auto& o : g.outputs)
    if (def_step.count(o)) last_use[o] = nsteps;
  for (const auto& [v, base] : view_base) {  // views are ordered after their base's producer
    std::string b = base;
    while (true) {
      last_use[b] = std::max(last_use[b], last_use[v]);
      auto it = view_base.find(b);
      if (it == view_base.end()) break;
      b = it->second;
    }
  }

  std::map<std::string, std::string> parent;  // union-find over buffers (in-place merges)
  std::function<std::string(const std::string&)> find = [&](const std::string& b) -> std::string {
    auto it = parent.find(b);
    if (it == parent.end() || it->second == b) return b;
    return it->second = find(it->second);
  };
  std::map<std::string, int> buf_first, buf_last;
  for (const auto& [v, l] : lay) {
    if (!def_step.count(v)) continue;
    auto [f, fresh] = buf_first.emplace(l.buffer, def_step[v]);
    if (!fresh) f->second = std::min(f->second, def_step[v]);
    auto [e, fresh2] = buf_last.emplace(l.buffer, last_use[v]);
    if (!fresh2) e->second = std::max(e->second, last_use[v]);
  }

  // 4. In place: a step's output takes over the buffer of an input that dies there.
  MemoryPlan mp;
  if (t.in_place) {
    for (int s = 0; s < nsteps; ++s) {
      const Node& n = g.nodes[steps[static_cast<std::size_t>(s)]];
      for (std::size_t k : in_place_candidates(n, t, g)) {
        const std::string& in = n.inputs[k];
        const std::string& out = n.outputs[0];
        if (!lay.count(in) || graph_inputs.count(in)) continue;
        const Lay& li = lay[in];
        Lay& lo = lay[out];
        const std::string rin = find(li.buffer), rout = find(lo.buffer);
        if (rin == rout || li.how != "own" || lo.how != "own" || lo.buffer != out) continue;
        if (buf_first[rin] < 0 || buf_last[rin] != s || buf_first[rout] != s) continue;
        parent[rout] = rin;
        buf_last[rin] = std::max(buf_last[rin], buf_last[rout]);
        lo.how = "in place of " + in;
        ++mp.in_place;
        break;
      }
    }
  }

  // 5. Buffer sizes and placement.
  std::map<std::string, i64> buf_bytes;
  for (const auto& [v, l] : lay) {
    if (!def_step.count(v) || l.how == PlannedValue::kSizedAtRunTime) continue;
    const auto dims = dims_of(v);
    // Sizes come from the model: bound them before any offset arithmetic can overflow.
    const std::uint64_t value_bytes =
        tensor_bytes(fmt::format("value '{}'", v), g.type_of(v).dtype, dims);
    if (value_bytes > static_cast<std::uint64_t>(kMaxArenaBytes))
      throw MemoryLimitError(
          fmt::format("value '{}' {}{} needs {}; a plan's arena holds at most {}", v,
                      dtype_name(g.type_of(v).dtype), dims_to_string(dims),
                      format_bytes(value_bytes), format_bytes(kMaxArenaBytes)));
    const i64 end =
        (l.elem_off + span_of(dims, l.strides)) * static_cast<i64>(dtype_size(g.type_of(v).dtype));
    i64& b = buf_bytes[find(l.buffer)];
    b = std::max(b, end);
    mp.naive_bytes += align_up(product(dims) * static_cast<i64>(dtype_size(g.type_of(v).dtype)),
                               static_cast<i64>(t.alignment));
  }
  struct Buf {
    std::string name;
    i64 bytes, offset;
    int first, last;
  };
  std::vector<Buf> bufs;
  for (const auto& [b, bytes] : buf_bytes) {
    int first = buf_first[b], last = buf_last[b];
    for (const auto& [c, p] : parent)  // merged buffers' lifetimes
      if (find(c) == b) {
        first = std::min(first, buf_first[c]);
        last = std::max(last, buf_last[c]);
      }
    bufs.push_back(
        {b, align_up(std::max<i64>(bytes, 1), static_cast<i64>(t.alignment)), 0, first, last});
  }
  std::sort(bufs.begin(), bufs.end(), [](const Buf& a, const Buf& b) {
    return a.bytes != b.bytes   ? a.bytes > b.bytes
           : a.first != b.first ? a.first < b.first
                                : a.name < b.name;
  });
  std::vector<const Buf*> placed;
  std::map<std::string, i64> buf_offset;
  for (Buf& b : bufs) {
    std::vector<std::pair<i64, i64>> busy;
    for (const Buf* p : placed)
      if (p->first <= b.last && b.first <= p->last)
        busy.push_back({p->offset, p->offset + p->bytes});
    std::sort(busy.begin(), busy.end());
    i64 off = 0;
    for (const auto& [lo, hi] : busy) {
      if (off + b.bytes <= lo) break;
      off = std::max(off, hi);
    }
    b.offset = off;
    placed.push_back(&b);
    buf_offset[b.name] = off;
    mp.arena_bytes = std::max(mp.arena_bytes, off + b.bytes);
  }
  mp.buffers = static_cast<int>(bufs.size());

  for (const auto& [v, l] : lay) {
    if (!def_step.count(v)) continue;
    PlannedValue pv;
    pv.name = v;
    pv.dtype = g.type_of(v).dtype;
    if (l.how == PlannedValue::kSizedAtRunTime) {
      pv.dims = g.type_of(v).shape.values();  // -1 where not known
      pv.root = v;
      pv.offset = -1;
      pv.how = l.how;
      pv.first = def_step[v];
      pv.last = last_use[v];
      mp.values[v] = std::move(pv);
      continue;
    }
    pv.dims = dims_of(v);
    pv.strides = l.strides;
    pv.root = find(l.buffer);
    pv.offset = buf_offset[pv.root] + l.elem_off * static_cast<i64>(dtype_size(pv.dtype));
    pv.how = l.how;
    pv.first = def_step[v];
    pv.last = last_use[v];
    if (l.how.rfind("view of ", 0) == 0) ++mp.views;
    if (l.how.rfind("slice of ", 0) == 0) ++mp.slices;
    mp.values[v] = std::move(pv);
  }
  if (steps_out) *steps_out = std::move(steps);
  return mp;
}

}  // namespace kiln::plan
