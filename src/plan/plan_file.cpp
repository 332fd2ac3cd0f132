#include "kiln/plan/plan_file.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/ir/hash.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/version.hpp"

namespace kiln::plan {

const char* library_version() { return kVersion; }

namespace {

using i64 = std::int64_t;
constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'P', 'L', 'A', 'N'};
constexpr std::size_t kWeightAlign = 16;

// ---- writing -----------------------------------------------------------------------------

class Writer {
 public:
  explicit Writer(std::string& out, std::size_t base) : out_(out), base_(base) {}
  template <class T>
  void pod(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.append(b, sizeof(T));
  }
  void u8(std::uint8_t v) { pod(v); }
  void u32(std::uint32_t v) { pod(v); }
  void u64(std::uint64_t v) { pod(v); }
  void i64v(i64 v) { pod(v); }
  void str(const std::string& s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out_ += s;
  }
  /// A sequence: its length, then f(item) for each item (the reader's count() reads the length).
  template <class C, class F>
  void list(const C& items, F&& f) {
    u32(static_cast<std::uint32_t>(items.size()));
    for (const auto& item : items) f(item);
  }
  void strs(const std::vector<std::string>& v) {
    list(v, [&](const std::string& s) { str(s); });
  }
  void ints(const std::vector<i64>& v) {
    list(v, [&](i64 x) { i64v(x); });
  }
  void tensor(const Tensor& t) {
    u8(static_cast<std::uint8_t>(t.dtype()));
    ints(t.dims());
    u64(t.nbytes());
    while ((base_ + out_.size()) % kWeightAlign) out_ += '\0';
    if (t.nbytes()) out_.append(reinterpret_cast<const char*>(t.raw()), t.nbytes());
  }
  void attr(const Attribute& a) {
    u8(static_cast<std::uint8_t>(a.index()));
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, i64>)
            i64v(v);
          else if constexpr (std::is_same_v<T, double>)
            pod(v);
          else if constexpr (std::is_same_v<T, std::string>)
            str(v);
          else if constexpr (std::is_same_v<T, std::vector<i64>>)
            ints(v);
          else if constexpr (std::is_same_v<T, std::vector<double>>)
            list(v, [&](double d) { pod(d); });
          else if constexpr (std::is_same_v<T, std::vector<std::string>>)
            strs(v);
          else if constexpr (std::is_same_v<T, Tensor>)
            tensor(v);
          else {  // a control-flow op's body, whole
            graph(*v.graph);
            u64(v.captures);
          }
        },
        a);
  }
  void node(const Node& n) {
    str(n.op);
    str(n.name);
    strs(n.inputs);
    strs(n.outputs);
    list(n.attrs, [&](const auto& a) {
      str(a.first);
      attr(a.second);
    });
  }
  void type(const TensorType& t) {
    u8(static_cast<std::uint8_t>(t.dtype));
    ints(t.shape.values());
  }
  // A type whose dims may be dynamic or symbolic: each dim its value (-1 when not fixed) and
  // its symbol ("" when none).
  void symbolic_type(const TensorType& t) {
    u8(static_cast<std::uint8_t>(t.dtype));
    u32(static_cast<std::uint32_t>(t.shape.rank()));
    for (const Dim& d : t.shape) {
      i64v(d.value());
      str(d.symbol_name());
    }
  }
  void profile(const Profile& p) {
    list(p.inputs, [&](const auto& in) {
      str(in.first);
      ints(in.second.min);
      ints(in.second.opt);
      ints(in.second.max);
    });
  }
  void graph(const Graph& g) {
    str(g.name);
    list(g.inputs, [&](const ValueInfo& vi) {
      str(vi.name);
      symbolic_type(vi.type);
    });
    strs(g.outputs);
    list(g.weights, [&](const auto& w) {
      str(w.first);
      tensor(w.second);
    });
    list(g.nodes, [&](const Node& n) { node(n); });
  }

 private:
  std::string& out_;
  std::size_t base_;  // file offset of out_[0], for weight alignment
};

// ---- reading -----------------------------------------------------------------------------

class Reader {
 public:
  Reader(const char* data, std::size_t size, std::size_t base, std::shared_ptr<void> owner)
      : p_(data), size_(size), base_(base), owner_(std::move(owner)) {}
  std::size_t pos() const { return pos_; }
  std::size_t left() const { return size_ - pos_; }
  void need(std::size_t n, const char* what) {
    if (n > left())
      throw FormatError(
          fmt::format("plan file is truncated: {} needs {} bytes at offset {}, {} left", what, n,
                      base_ + pos_, left()));
  }
  template <class T>
  T pod(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::uint8_t u8(const char* w) { return pod<std::uint8_t>(w); }
  std::uint32_t u32(const char* w) { return pod<std::uint32_t>(w); }
  std::uint64_t u64(const char* w) { return pod<std::uint64_t>(w); }
  i64 i64v(const char* w) { return pod<i64>(w); }
  std::uint32_t count(const char* what, std::size_t min_each) {
    const std::uint32_t n = u32(what);
    if (static_cast<std::uint64_t>(n) * min_each > left())
      throw FormatError(
          fmt::format("plan file is corrupt or truncated: {} count {} at offset {} "
                      "exceeds the {} bytes left",
                      what, n, base_ + pos_ - 4, left()));
    return n;
  }
  std::string str(const char* what) {
    const std::uint32_t n = count(what, 1);
    std::string s(p_ + pos_, n);
    pos_ += n;
    return s;
  }
  std::vector<std::string> strs(const char* what) {
    std::vector<std::string> v(count(what, 4));
    for (auto& s : v) s = str(what);
    return v;
  }
  std::vector<i64> ints(const char* what) {
    std::vector<i64> v(count(what, 8));
    for (auto& x : v) x = i64v(what);
    return v;
  }
  DType dtype(const char* what) {
    const std::uint8_t c = u8(what);
    if (c > static_cast<std::uint8_t>(DType::f4e2m1))
      throw FormatError(fmt::format("plan file is corrupt: {} has dtype code {} at offset {}", what,
                                    c, base_ + pos_ - 1));
    return static_cast<DType>(c);
  }
  std::vector<i64> dims(const char* what) {
    auto d = ints(what);
    check_dims(what, d);
    return d;
  }
  void check_dims(const char* what, const std::vector<i64>& d) {
    if (d.size() > 32) fail(what, fmt::format("rank {}", d.size()));
    i64 total = 1;
    for (i64 x : d) {
      if (x < 0 || x > (i64{1} << 40)) fail(what, fmt::format("dim {}", x));
      if (x != 0 && total > (i64{1} << 50) / x) fail(what, "element count overflows");
      total *= x;
    }
  }
  Tensor tensor(const char* what) {
    const DType dt = dtype(what);
    auto d = dims(what);
    const std::uint64_t nbytes = u64(what);
    if (nbytes != static_cast<std::uint64_t>(product(d)) * dtype_size(dt))
      fail(what, fmt::format("{} bytes for {}{}", nbytes, dtype_name(dt), dims_to_string(d)));
    while ((base_ + pos_) % kWeightAlign) {
      need(1, what);
      ++pos_;
    }
    need(nbytes, what);
    Tensor t = nbytes ? Tensor::view(dt, d, owner_,
                                     reinterpret_cast<std::byte*>(const_cast<char*>(p_ + pos_)))
                      : Tensor(dt, d);
    pos_ += nbytes;
    return t;
  }
  Attribute attr(const char* what) {
    switch (u8(what)) {
      case 0: return i64v(what);
      case 1: return pod<double>(what);
      case 2: return str(what);
      case 3: return ints(what);
      case 4: {
        std::vector<double> v(count(what, 8));
        for (auto& x : v) x = pod<double>(what);
        return v;
      }
      case 5: return strs(what);
      case 6: return tensor(what);
      case 7: {  // a control-flow op's body
        if (depth_ >= kMaxBodyDepth)
          fail(what, fmt::format("bodies nested more than {} deep", kMaxBodyDepth));
        ++depth_;
        auto body = std::make_shared<Graph>(graph());
        --depth_;
        const std::uint64_t captures = u64(what);
        if (captures > body->inputs.size())
          fail(what, fmt::format("{} captured values of a body with {} inputs", captures,
                                 body->inputs.size()));
        return Subgraph{std::move(body), static_cast<std::size_t>(captures)};
      }
      default: fail(what, "an unknown attribute kind");
    }
  }
  Node node() {
    Node n;
    n.op = str("step op");
    n.name = str("step name");
    n.inputs = strs("step inputs");
    n.outputs = strs("step outputs");
    const std::uint32_t na = count("step attributes", 5);
    for (std::uint32_t i = 0; i < na; ++i) {
      std::string k = str("attribute name");
      n.attrs[k] = attr("attribute value");
    }
    return n;
  }
  TensorType type(const char* what) {
    TensorType t;
    t.dtype = dtype(what);
    t.shape = Shape::of(dims(what));
    return t;
  }
  /// An output's type: -1 is a dim known only at run time (a value of data-dependent size).
  TensorType output_type(const char* what) {
    TensorType t;
    t.dtype = dtype(what);
    auto d = ints(what);
    std::vector<i64> known;
    for (i64 x : d) {
      if (x < -1) fail(what, fmt::format("dim {}", x));
      known.push_back(x < 0 ? 1 : x);
    }
    check_dims(what, known);
    t.shape = Shape::of(d);
    return t;
  }
  TensorType symbolic_type(const char* what) {
    TensorType t;
    t.dtype = dtype(what);
    const std::uint32_t rank = count(what, 12);
    if (rank > 32) fail(what, fmt::format("rank {}", rank));
    for (std::uint32_t i = 0; i < rank; ++i) {
      const i64 v = i64v(what);
      std::string sym = str(what);
      if (v < -1 || v > (i64{1} << 40)) fail(what, fmt::format("dim {}", v));
      if (v >= 0 && !sym.empty())
        fail(what, fmt::format("fixed dim {} with a symbol '{}'", v, sym));
      t.shape.push_back(v >= 0        ? Dim(v)
                        : sym.empty() ? Dim::dynamic()
                                      : Dim::symbol(std::move(sym)));
    }
    return t;
  }
  Profile profile() {
    Profile p;
    for (std::uint32_t n = count("profile inputs", 16); n-- > 0;) {
      std::string name = str("profile input name");
      InputRange r{dims("profile min"), dims("profile opt"), dims("profile max")};
      if (!p.inputs.emplace(std::move(name), std::move(r)).second)
        fail("profile", "an input named twice");
    }
    return p;
  }
  Graph graph() {
    Graph g;
    g.name = str("source graph name");
    for (std::uint32_t n = count("source inputs", 9); n-- > 0;) {
      std::string name = str("source input name");
      g.inputs.push_back({std::move(name), symbolic_type("source input type")});
    }
    g.outputs = strs("source outputs");
    for (std::uint32_t n = count("source weights", 14); n-- > 0;) {
      std::string name = str("source weight name");
      g.weights[name] = tensor("source weight");
    }
    for (std::uint32_t n = count("source nodes", 20); n-- > 0;) g.nodes.push_back(node());
    return g;
  }
  [[noreturn]] void fail(const char* what, const std::string& msg) {
    throw FormatError(
        fmt::format("plan file is corrupt: {} has {} (near offset {})", what, msg, base_ + pos_));
  }

 private:
  static constexpr int kMaxBodyDepth = 16;
  const char* p_;
  std::size_t size_;
  std::size_t base_;
  std::size_t pos_ = 0;
  int depth_ = 0;  // bodies being read (a hostile file could nest them without end)
  std::shared_ptr<void> owner_;
};

std::string header_prefix(const Plan& p) {
  std::string h;
  Writer w(h, 0);
  h.append(kMagic, 8);
  w.u32(kPlanFormatVersion);
  w.str(library_version());
  w.str(p.target);
  w.u64(p.weights_hash);
  return h;
}

}  // namespace

std::string serialize_plan(const Plan& p) {
  std::string head = header_prefix(p);
  const std::size_t payload_at = head.size() + 8;
  std::string body;
  Writer w(body, payload_at);
  w.str(p.graph_name);
  auto binding = [&](const auto& b) {
    w.str(b.name);
    w.type(b.type);
  };
  w.list(p.inputs, binding);
  w.list(p.outputs, binding);
  w.list(p.steps, [&](const Node& s) { w.node(s); });
  const MemoryPlan& m = p.memory;
  w.i64v(m.arena_bytes);
  w.i64v(m.naive_bytes);
  for (int v : {m.buffers, m.in_place, m.views, m.slices}) w.i64v(v);
  w.list(m.values, [&](const auto& entry) {
    const auto& v = entry.second;
    w.str(v.name);
    w.u8(static_cast<std::uint8_t>(v.dtype));
    w.ints(v.dims);
    w.ints(v.strides);
    w.i64v(v.offset);
    w.str(v.root);
    w.str(v.how);
    w.i64v(v.first);
    w.i64v(v.last);
  });
  w.list(p.weights, [&](const auto& wt) {
    w.str(wt.first);
    w.tensor(wt.second);
  });
  w.list(p.tactics, [&](const auto& t) {
    w.str(t.first);
    w.str(t.second);
  });
  w.list(p.profiles, [&](const Profile& prof) { w.profile(prof); });
  if (p.is_dynamic()) {
    if (!p.source)
      throw Error(fmt::format("plan '{}' has profiles but no source graph", p.graph_name));
    w.graph(*p.source);
    w.list(p.buckets, [&](const BucketTactics& b) {
      w.u32(static_cast<std::uint32_t>(b.profile));
      w.list(b.shape, [&](const auto& in) {
        w.str(in.first);
        w.ints(in.second);
      });
      w.list(b.steps, [&](const auto& st) {
        w.str(st.first);
        w.str(st.second);
      });
    });
  }
  std::string out = std::move(head);
  Writer hw(out, 0);
  hw.u64(body.size());
  out += body;
  hw.u64(fnv1a64(out.data(), out.size()));
  return out;
}

void reseal_plan(std::string& bytes) {
  if (bytes.size() < 8) throw FormatError("plan bytes too short to hold a checksum");
  const std::uint64_t h = plan_checksum(std::string_view(bytes).substr(0, bytes.size() - 8));
  std::memcpy(bytes.data() + bytes.size() - 8, &h, 8);
}

Plan deserialize_plan(const std::string& bytes, const LoadExpectations& expect) {
  // An aligned copy that the weights view without copying again.
  std::shared_ptr<char[]> buf(new char[bytes.size() + 1]);
  std::memcpy(buf.get(), bytes.data(), bytes.size());
  Reader r(buf.get(), bytes.size(), 0, buf);
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 8) != 0) {
    std::string got;
    for (std::size_t i = 0; i < std::min<std::size_t>(8, bytes.size()); ++i)
      got += std::isprint(static_cast<unsigned char>(bytes[i])) ? bytes[i] : '?';
    throw FormatError(
        fmt::format("not a kiln plan file: the magic is '{}' ({} bytes), expected "
                    "'KILNPLAN'",
                    got, std::min<std::size_t>(8, bytes.size())));
  }
  r.need(8, "magic");
  for (int i = 0; i < 8; ++i) r.u8("magic");
  const std::uint32_t version = r.u32("format version");
  if (version != kPlanFormatVersion)
    throw FormatError(
        fmt::format("plan format version {}; this kiln reads version {} (rebuild the "
                    "plan)",
                    version, kPlanFormatVersion));
  const std::string lib = r.str("library version");
  if (lib != library_version())
    throw FormatError(fmt::format("plan was written by kiln {}; this is kiln {} (rebuild the plan)",
                                  lib, library_version()));
  const std::string target = r.str("target");
  if (!expect.target.empty() && target != expect.target)
    throw FormatError(
        fmt::format("plan was built for target '{}'; this is '{}' (rebuild the plan "
                    "for this target)",
                    target, expect.target));
  const std::uint64_t hash = r.u64("weights hash");
  if (expect.weights_hash && *expect.weights_hash != hash)
    throw FormatError(
        fmt::format("plan was built from other weights (hash {:016x}, these are "
                    "{:016x})",
                    hash, *expect.weights_hash));
  const std::uint64_t payload = r.u64("payload size");
  if (payload > r.left() || r.left() - payload < 8)
    throw FormatError(fmt::format("plan file is truncated: {} bytes, the header promises {}",
                                  bytes.size(), r.pos() + payload + 8));
  if (r.left() - payload > 8)
    throw FormatError(fmt::format("plan file has {} bytes after its end", r.left() - payload - 8));
  const std::size_t end = r.pos() + static_cast<std::size_t>(payload);
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + end, 8);
  const std::uint64_t actual = fnv1a64(bytes.data(), end);
  if (stored != actual)
    throw FormatError(
        fmt::format("plan file checksum mismatch (stored {:016x}, computed {:016x}): "
                    "the file is corrupt",
                    stored, actual));

  Plan p;
  p.target = target;
  p.weights_hash = hash;
  p.graph_name = r.str("graph name");
  for (std::uint32_t n = r.count("inputs", 6); n-- > 0;) {
    std::string name = r.str("input name");
    p.inputs.push_back({name, r.type("input type")});
  }
  for (std::uint32_t n = r.count("outputs", 6); n-- > 0;) {
    std::string name = r.str("output name");
    p.outputs.push_back({name, r.output_type("output type")});
  }
  for (std::uint32_t n = r.count("steps", 20); n-- > 0;) p.steps.push_back(r.node());
  MemoryPlan& m = p.memory;
  m.arena_bytes = r.i64v("arena size");
  m.naive_bytes = r.i64v("naive size");
  m.buffers = static_cast<int>(r.i64v("buffers"));
  m.in_place = static_cast<int>(r.i64v("in place"));
  m.views = static_cast<int>(r.i64v("views"));
  m.slices = static_cast<int>(r.i64v("slices"));
  for (std::uint32_t n = r.count("values", 40); n-- > 0;) {
    PlannedValue v;
    v.name = r.str("value name");
    v.dtype = r.dtype("value dtype");
    v.dims = r.ints("value dims");  // checked below: -1 is a dim known only at run time
    v.strides = r.ints("value strides");
    v.offset = r.i64v("value offset");
    v.root = r.str("value root");
    v.how = r.str("value placement");
    if (!v.sized_at_run_time()) r.check_dims("value dims", v.dims);
    v.first = static_cast<int>(r.i64v("value first step"));
    v.last = static_cast<int>(r.i64v("value last step"));
    m.values[v.name] = std::move(v);
  }
  for (std::uint32_t n = r.count("weights", 14); n-- > 0;) {
    std::string name = r.str("weight name");
    p.weights[name] = r.tensor("weight");
  }
  for (std::uint32_t n = r.count("tactics", 8); n-- > 0;) {
    std::string key = r.str("tactic key");
    p.tactics[key] = r.str("tactic");
  }
  for (std::uint32_t n = r.count("profiles", 4); n-- > 0;) p.profiles.push_back(r.profile());
  if (p.is_dynamic()) {
    p.source = std::make_shared<const Graph>(r.graph());
    for (std::uint32_t n = r.count("buckets", 12); n-- > 0;) {
      BucketTactics b;
      b.profile = r.u32("bucket profile");
      if (b.profile >= p.profiles.size())
        throw FormatError(
            fmt::format("plan file is corrupt: a bucket of profile {} (the plan has {})", b.profile,
                        p.profiles.size()));
      for (std::uint32_t k = r.count("bucket inputs", 8); k-- > 0;) {
        std::string name = r.str("bucket input name");
        b.shape[name] = r.dims("bucket dims");
      }
      for (std::uint32_t k = r.count("bucket steps", 8); k-- > 0;) {
        std::string step = r.str("bucket step");
        std::string key = r.str("bucket problem");
        if (!p.tactics.count(key))
          throw FormatError(fmt::format(
              "plan file is corrupt: bucket step '{}' names problem '{}', which has no tactic",
              step, key));
        b.steps[step] = std::move(key);
      }
      p.buckets.push_back(std::move(b));
    }
  }
  if (r.pos() != end)
    throw FormatError(
        fmt::format("plan file is corrupt: payload ends at {}, its size says {}", r.pos(), end));
  try {
    validate_plan(p);
  } catch (const FormatError&) {
    throw;
  } catch (const Error& e) {  // a malformed fused body, a dim that overflows
    throw FormatError(std::string("plan is inconsistent: ") + e.what());
  }
  return p;
}

std::uint64_t plan_checksum(std::string_view bytes) { return fnv1a64(bytes.data(), bytes.size()); }

void save_plan(const Plan& p, const std::string& path) {
  const std::string bytes = serialize_plan(p);
  // Written beside the file and renamed over it: a failed write never leaves half a plan where
  // a good one was.
  const std::string tmp = path + ".kiln-tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error(fmt::format("cannot write plan file '{}'", path));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw Error(fmt::format("writing plan file '{}' failed", path));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw Error(fmt::format("cannot write plan file '{}': {}", path, ec.message()));
  }
}

Plan load_plan(const std::string& path, const LoadExpectations& expect) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(fmt::format("cannot open plan file '{}'", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  try {
    return deserialize_plan(ss.str(), expect);
  } catch (const FormatError& e) {
    throw FormatError(fmt::format("{}: {}", path, e.what()));
  }
}

}  // namespace kiln::plan
