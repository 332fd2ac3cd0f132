// The plugin registry (include/kiln/plugin.hpp): entries by IR op name, and shared libraries of
// plugins loaded with dlopen.
#include "kiln/ir/plugin.hpp"

#include <dlfcn.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>

#include <fmt/format.h>

namespace kiln::plugin {

namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, Entry> by_name;
  std::string loading;              ///< the library whose registrations are running, "" otherwise
  int loaded = 0;                   ///< plugins the library being loaded registered
  std::string failed;               ///< the first registration of that library that failed
  std::set<std::string> libraries;  ///< loaded, as canonical paths
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

std::int64_t DeviceTensor::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : dims) n *= d;
  return n;
}

std::string qualified_name(const std::string& domain, const std::string& op, int version) {
  return fmt::format("{}::{}@{}", domain, op, version);
}

bool is_plugin_op(const std::string& op) {
  const auto sep = op.find("::");
  return sep != std::string::npos && op.find('@', sep) != std::string::npos;
}

std::string Entry::name() const { return qualified_name(domain, op, version); }

void add(Entry e) {
  if (e.domain.empty() || e.op.empty() || e.version < 1)
    throw Error(
        fmt::format("a plugin needs a domain, an op and a version of 1 or more (got '{}', "
                    "'{}', {})",
                    e.domain, e.op, e.version));
  if (e.domain == "ai.onnx")
    throw Error(fmt::format("plugin '{}': the domain 'ai.onnx' is ONNX's own", e.op));
  if (e.min_inputs < 0 || (e.max_inputs >= 0 && e.max_inputs < e.min_inputs) || e.outputs < 1)
    throw Error(fmt::format("plugin '{}': {} to {} inputs and {} outputs", e.name(), e.min_inputs,
                            e.max_inputs, e.outputs));
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  const std::string name = e.name();
  if (auto it = r.by_name.find(name); it != r.by_name.end())
    throw Error(fmt::format("plugin '{}' is registered twice (first by {}, then by {})", name,
                            it->second.library.empty() ? "the program" : it->second.library,
                            r.loading.empty() ? "the program" : r.loading));
  if (e.library.empty()) e.library = r.loading;
  ++r.loaded;
  r.by_name.emplace(name, std::move(e));
}

const Entry* find(const std::string& op) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.by_name.find(op);
  return it == r.by_name.end() ? nullptr : &it->second;
}

const Entry* find(const std::string& domain, const std::string& op, int version) {
  return find(qualified_name(domain, op, version));
}

std::vector<const Entry*> all() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<const Entry*> v;
  for (const auto& [k, e] : r.by_name) v.push_back(&e);
  return v;
}

void load_library(const std::string& path) {
  Registry& r = registry();
  std::error_code ec;
  const std::string canonical = std::filesystem::weakly_canonical(path, ec).string();
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error(fmt::format("plugin library '{}' is no file", path));
  {
    std::lock_guard lock(r.mu);
    if (r.libraries.count(canonical)) return;  // loaded already: its plugins are registered
    if (!r.loading.empty())
      throw Error(fmt::format("plugin library '{}' loads another ('{}')", r.loading, path));
    r.loading = canonical;  // what its plugins record: valid from any directory
    r.loaded = 0;
    r.failed.clear();
  }
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  const std::string error = h ? "" : dlerror();
  int loaded = 0;
  std::string failed;
  {
    std::lock_guard lock(r.mu);
    r.loading.clear();
    loaded = r.loaded;
    failed = r.failed;
  }
  if (!h) throw Error(fmt::format("plugin library '{}' could not be loaded: {}", path, error));
  if (!failed.empty())
    throw Error(
        fmt::format("plugin library '{}': a plugin could not be registered: {}", path, failed));
  if (loaded == 0)
    throw Error(fmt::format(
        "plugin library '{}' registers no plugin (KILN_PLUGIN(Type) in it registers one)", path));
  std::lock_guard lock(r.mu);
  r.libraries.insert(canonical);
}

void missing(const Node& node) {
  const std::string lib = node.attr_string(kLibraryAttr, "");
  throw UnsupportedError(fmt::format(
      "{}the plugin '{}' is not loaded{}", node.where(), node.op,
      lib.empty() ? std::string(" (it was built into the program that made this model or plan)")
                  : fmt::format(" (it came from '{}': load it with --plugin {})", lib, lib)));
}

namespace detail {
bool register_type(Entry e) {
  // Registrations run as static initializers (of the program, or of a library dlopen loads),
  // where an exception would end the program: a failure is kept for load_library() to report,
  // or printed when the program itself registers twice.
  try {
    add(std::move(e));
    return true;
  } catch (const Error& err) {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    if (r.loading.empty())
      std::fprintf(stderr, "kiln: %s\n", err.what());
    else if (r.failed.empty())
      r.failed = err.what();
    return false;
  }
}
}  // namespace detail

}  // namespace kiln::plugin
