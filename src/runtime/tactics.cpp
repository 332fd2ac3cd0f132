// Tactics: timing candidates, choosing them for each step (from the plan, the timing cache or
// by timing), and the timing-cache file.
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "check.hpp"
#include "engine_impl.hpp"
#include "kiln/runtime/device.hpp"
#include "timing_cache.hpp"

namespace kiln::runtime::detail {

// ---- the tactic's text ----------------------------------------------------------------------

namespace {
constexpr std::pair<Tactic::Backend, const char*> kBackends[] = {
    {Tactic::Backend::cudnn, "cudnn"},       {Tactic::Backend::cudnn_graph, "cudnn-graph"},
    {Tactic::Backend::cublaslt, "cublaslt"}, {Tactic::Backend::cudnn_sdpa, "cudnn-sdpa"},
    {Tactic::Backend::kernel, "kernel"},
};

const char* backend_name(Tactic::Backend b) {
  for (const auto& [k, name] : kBackends)
    if (k == b) return name;
  return "?";
}

template <class T>
bool read_number(const std::string& s, T& v) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}
}  // namespace

std::string to_text(const Tactic& t) {
  return fmt::format("{} {} ws {} ms {}", backend_name(t.backend), t.algorithm, t.workspace, t.ms);
}

Tactic parse_tactic(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> w;
  for (std::string s; in >> s;) w.push_back(s);
  Tactic t;
  bool ok = w.size() == 6 && w[2] == "ws" && w[4] == "ms" && read_number(w[1], t.algorithm) &&
            read_number(w[3], t.workspace) && read_number(w[5], t.ms) && t.ms >= 0;
  bool known = false;
  std::vector<std::string> names;
  for (const auto& [b, name] : kBackends) {
    names.push_back(name);
    if (ok && w[0] == name) t.backend = b, known = true;
  }
  if (!ok || !known)
    throw FormatError(
        fmt::format("'{}' is not a tactic (expected '<{}> <algorithm> ws <bytes> ms <time>')", text,
                    fmt::join(names, "|")));
  return t;
}

float time_ms(const std::function<void()>& f, int repeats) {
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  KILN_CHECK(cudaEventCreate(&e0));
  float ms = 0;
  try {
    KILN_CHECK(cudaEventCreate(&e1));
    f();
    KILN_CHECK(cudaEventRecord(e0, nullptr));
    for (int i = 0; i < repeats; ++i) f();
    KILN_CHECK(cudaEventRecord(e1, nullptr));
    KILN_CHECK(cudaEventSynchronize(e1));
    KILN_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  } catch (...) {
    cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    throw;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms / static_cast<float>(repeats);
}

std::vector<std::unique_ptr<Step>> EngineState::make_steps(i64 batch, std::byte* arena,
                                                           const Library& lib,
                                                           std::shared_ptr<HostValues> host) {
  std::vector<std::unique_ptr<Step>> steps;
  std::size_t ws = 0;
  if (!host) host = std::make_shared<HostValues>();
  for (const Node& node : plan.steps) {
    StepEnv env{
        node, *this, lib, batch, [&](const std::string& n) { return value(n, batch, arena); },
        host};
    steps.push_back(make_step(env));
  }
  // Tactics: from the cache when known, timed otherwise (each distinct problem once), or, with
  // timing off, the libraries' heuristic choice each step starts with.
  std::lock_guard lock(tactics_mu);
  std::set<std::string> to_time;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto k = steps[i]->tactic_key();
    if (k.empty()) continue;
    if (batch == max_batch) step_problems[plan.steps[i].name] = k;
    if (!tactics.count(k)) to_time.insert(k);
  }
  if (!options.time_tactics) {
    for (std::size_t i = 0; i < steps.size(); ++i) {
      auto& s = steps[i];
      const auto k = s->tactic_key();
      if (k.empty()) continue;
      if (auto t = tactics.find(k); t != tactics.end()) {
        s->set_tactic(t->second);
        continue;
      }
      // Another shape's tactic for this step (its bucket's): the step checks that it runs here.
      auto b = options.step_tactics.find(plan.steps[i].name);
      if (b == options.step_tactics.end()) continue;
      try {
        s->set_tactic(parse_tactic(b->second));
        borrowed.insert(k);
        to_time.erase(k);
      } catch (const FormatError& e) {
        log(Severity::warning, fmt::format("step '{}': {}; it runs the heuristic's choice",
                                           plan.steps[i].name, e.what()));
      }
    }
    untimed.insert(to_time.begin(), to_time.end());
    if (!to_time.empty())
      log(Severity::info,
          fmt::format("{} problems have no timed tactic; they run the libraries' heuristic choice "
                      "(timing is off), the first: {}",
                      to_time.size(), *to_time.begin()));
    for (const auto& s : steps) ws = std::max(ws, s->workspace());
    workspace[batch] = ws;
    return steps;
  }
  int done = 0;
  const int total = static_cast<int>(to_time.size());
  for (auto& s : steps) {
    const auto k = s->tactic_key();
    if (k.empty()) continue;
    if (auto t = tactics.find(k); t != tactics.end()) {
      s->set_tactic(t->second);
      continue;
    }
    if (options.progress) options.progress(done, total, k);
    tactics[k] = s->tune();
    log(Severity::verbose, fmt::format("tactic for {}: {}", k, to_text(tactics[k])));
    ++done;
    tactics_changed = true;
  }
  if (options.progress && total > 0) options.progress(total, total, "done");
  for (const auto& s : steps) ws = std::max(ws, s->workspace());
  workspace[batch] = ws;
  return steps;
}

// ---- timing cache -------------------------------------------------------------------------

namespace {
/// The first line of a timing cache; 2: tactics as to_text() writes them.
constexpr const char* kCacheMagic = "kiln-timing-cache 2";

std::string cache_identity() {
  const auto devs = devices();
  int dev = 0;
  cudaGetDevice(&dev);
  int driver = 0;
  cudaDriverGetVersion(&driver);
  std::string name = "?";
  int sms = 0, major = 0, minor = 0;
  for (const auto& d : devs)
    if (d.index == dev)
      name = d.name, sms = d.multiprocessors, major = d.sm_major, minor = d.sm_minor;
  return fmt::format("{} | sm_{}{} | {} SMs | driver {} | {}", name, major, minor, sms, driver,
                     library_versions());
}
}  // namespace

void EngineState::load_timing_cache() {
  const std::string& path = options.timing_cache;
  if (path.empty() || !std::filesystem::exists(path)) return;
  std::ifstream in(path);
  const std::string identity = cache_identity();
  const TimingCacheText c = parse_timing_cache(in, identity);
  if (c.status == TimingCacheText::Status::not_a_cache) {
    if (!c.other_version.empty())
      log(Severity::warning,
          fmt::format("timing cache '{}' is '{}', this kiln reads another version; "
                      "it will be rewritten",
                      path, c.other_version));
    else
      log(Severity::warning,
          fmt::format("timing cache '{}' is not a kiln timing cache; it will be rewritten", path));
    return;
  }
  if (c.status == TimingCacheText::Status::other_identity) {
    log(Severity::info,
        fmt::format("timing cache '{}' was made for '{}', this is '{}'; timing again", path,
                    c.identity, identity));
    return;
  }
  int n = 0;
  for (const auto& [key, text] : c.tactics) {
    try {
      tactics.emplace(key, parse_tactic(text));  // the plan's own win
      ++n;
    } catch (const FormatError& e) {
      log(Severity::warning, fmt::format("timing cache '{}': {}; timing it again", path, e.what()));
    }
  }
  log(Severity::info, fmt::format("timing cache '{}': {} tactics", path, n));
}

void EngineState::save_timing_cache() {
  const std::string& path = options.timing_cache;
  if (path.empty() || !tactics_changed) return;
  // Written next to the file and renamed over it, so a crash never leaves half a cache.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw Error(fmt::format("cannot write timing cache '{}'", path));
    std::map<std::string, std::string> text;
    for (const auto& [k, v] : tactics) text.emplace(k, to_text(v));
    write_timing_cache(out, cache_identity(), text);
    if (!out) throw Error(fmt::format("cannot write timing cache '{}'", path));
  }
  std::filesystem::rename(tmp, path);
  tactics_changed = false;
}

}  // namespace kiln::runtime::detail
