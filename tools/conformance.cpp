#include "conformance.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/reference/executor.hpp"

namespace fs = std::filesystem;

namespace kiln::tools {

namespace {

enum class Outcome { pass, fail, unsupported };

struct TestCase {
  std::string name;
  fs::path model;
  std::vector<fs::path> data_sets;  // folders with input_N.pb / output_N.pb
  fs::path light_output;            // light layout: expected output file
};

struct Result {
  Outcome outcome = Outcome::fail;
  std::string detail;
};

constexpr double kRtol = 1e-3, kAtol = 1e-7;

std::vector<TestCase> discover(const fs::path& dir) {
  std::vector<TestCase> tests;
  auto add_folder = [&](const fs::path& p) {
    TestCase t{p.filename().string(), p / "model.onnx", {}, {}};
    for (const auto& e : fs::directory_iterator(p))
      if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0)
        t.data_sets.push_back(e.path());
    std::sort(t.data_sets.begin(), t.data_sets.end());
    tests.push_back(std::move(t));
  };
  if (fs::exists(dir / "model.onnx")) {
    add_folder(dir);
    return tests;
  }
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto& p = e.path();
    if (e.is_directory() && fs::exists(p / "model.onnx"))
      add_folder(p);
    else if (e.is_regular_file() && p.extension() == ".onnx") {
      const std::string stem = p.stem().string();
      const fs::path out = dir / (stem + "_output_0.pb");
      if (fs::exists(out)) tests.push_back(TestCase{stem, p, {}, out});
    }
  }
  std::sort(tests.begin(), tests.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return tests;
}

std::vector<fs::path> numbered(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> v;
  for (int i = 0;; ++i) {
    fs::path p = dir / fmt::format("{}_{}.pb", prefix, i);
    if (!fs::exists(p)) break;
    v.push_back(p);
  }
  return v;
}

/// Compares one output; returns an empty string when it matches.
std::string compare(const std::string& name, const Tensor& got, const Tensor& want) {
  if (got.is_none() || want.is_none() || got.is_sequence() || want.is_sequence()) {
    if (got.is_none() != want.is_none() || got.is_sequence() != want.is_sequence())
      return fmt::format("output '{}': {} but expected {}", name, got.type_string(),
                         want.type_string());
    if (got.dtype() != want.dtype())
      return fmt::format("output '{}': dtype {} but expected {}", name, dtype_name(got.dtype()),
                         dtype_name(want.dtype()));
    if (got.is_none()) return {};
    if (got.elements().size() != want.elements().size())
      return fmt::format("output '{}': {} but expected {}", name, got.type_string(),
                         want.type_string());
    for (std::size_t i = 0; i < got.elements().size(); ++i) {
      std::string err =
          compare(fmt::format("{}[{}]", name, i), got.elements()[i], want.elements()[i]);
      if (!err.empty()) return err;
    }
    return {};
  }
  if (got.dtype() != want.dtype())
    return fmt::format("output '{}': dtype {} but expected {}", name, dtype_name(got.dtype()),
                       dtype_name(want.dtype()));
  if (got.dims() != want.dims())
    return fmt::format("output '{}': shape {} but expected {}", name, dims_to_string(got.dims()),
                       dims_to_string(want.dims()));
  double max_abs = 0, max_rel = 0;
  std::int64_t bad = 0, first_bad = -1;
  const bool fp = is_float(got.dtype());
  for (std::int64_t i = 0; i < got.numel(); ++i) {
    const double g = got.get(i), w = want.get(i);
    bool ok;
    if (fp) {
      if (std::isnan(w) || std::isnan(g))
        ok = std::isnan(w) && std::isnan(g);
      else if (std::isinf(w) || std::isinf(g))
        ok = g == w;
      else {
        const double d = std::abs(g - w);
        max_abs = std::max(max_abs, d);
        if (w != 0) max_rel = std::max(max_rel, d / std::abs(w));
        ok = d <= kAtol + kRtol * std::abs(w);
      }
    } else {  // integers, and float8 (converted exactly: any NaN code matches any other)
      ok = g == w || (std::isnan(g) && std::isnan(w));
      if (!ok) max_abs = std::max(max_abs, std::abs(g - w));
    }
    if (!ok && bad++ == 0) first_bad = i;
  }
  if (bad == 0) return {};
  return fmt::format(
      "output '{}': {} of {} elements differ (first at {}: got {}, expected {}); "
      "max abs err {:.3g}, max rel err {:.3g}",
      name, bad, got.numel(), first_bad, got.get(first_bad), want.get(first_bad), max_abs, max_rel);
}

Result run_one(const TestCase& t) {
  try {
    Graph g = onnx::load_model(t.model.string(), {.evaluator = &reference::constant_evaluator()});
    reference::Executor exec(g);
    auto check_set = [&](const reference::TensorMap& inputs,
                         const std::vector<Tensor>& expected) -> std::string {
      auto outs = exec.run(inputs);
      if (expected.size() != g.outputs.size())
        return fmt::format("{} expected outputs for {} graph outputs", expected.size(),
                           g.outputs.size());
      for (std::size_t i = 0; i < expected.size(); ++i) {
        std::string err = compare(g.outputs[i], outs.at(g.outputs[i]), expected[i]);
        if (!err.empty()) return err;
      }
      return {};
    };
    if (!t.light_output.empty()) {
      reference::TensorMap inputs;
      for (const auto& vi : g.inputs) {
        std::vector<std::int64_t> dims;
        for (const auto& d : vi.type.shape) dims.push_back(d.is_fixed() ? d.value() : 1);
        Tensor x(vi.type.dtype, dims);
        const auto n = x.numel();
        for (std::int64_t i = 0; i < n; ++i)
          x.set(i, static_cast<double>(static_cast<float>(i) / static_cast<float>(n)));
        inputs[vi.name] = x;
      }
      std::string err = check_set(inputs, {onnx::load_tensor(t.light_output.string())});
      return err.empty() ? Result{Outcome::pass, ""} : Result{Outcome::fail, err};
    }
    if (t.data_sets.empty()) return {Outcome::fail, "no test_data_set_* folder"};
    // Expected outputs are files of the kinds the model declares (a loop's output may be an
    // optional to kiln, where the model declares the sequence it holds).
    const auto declared = onnx::declared_output_types(t.model.string());
    auto output_type = [&](std::size_t i) {
      TensorType t = i < g.outputs.size() ? g.type_of(g.outputs[i]) : TensorType{};
      if (i < declared.size() && declared[i]) t.kind = declared[i]->kind;
      return t;
    };
    for (const auto& ds : t.data_sets) {
      const auto in_files = numbered(ds, "input");
      const auto out_files = numbered(ds, "output");
      if (in_files.size() != g.inputs.size())
        return {Outcome::fail,
                fmt::format("{}: {} input files for {} graph inputs", ds.filename().string(),
                            in_files.size(), g.inputs.size())};
      reference::TensorMap inputs;
      for (std::size_t i = 0; i < in_files.size(); ++i)
        inputs[g.inputs[i].name] = onnx::load_value(in_files[i].string(), g.inputs[i].type);
      std::vector<Tensor> expected;
      for (std::size_t i = 0; i < out_files.size(); ++i)
        expected.push_back(onnx::load_value(out_files[i].string(), output_type(i)));
      std::string err = check_set(inputs, expected);
      if (!err.empty()) return {Outcome::fail, ds.filename().string() + ": " + err};
    }
    return {Outcome::pass, ""};
  } catch (const UnsupportedError& e) {
    return {Outcome::unsupported, e.what()};
  } catch (const std::exception& e) {
    return {Outcome::fail, fmt::format("exception: {}", e.what())};
  }
}

/// The short reason of an unsupported line: the message without the pointer to `kiln ops`.
std::string short_reason(std::string s) {
  if (auto p = s.find("; `kiln ops` lists"); p != std::string::npos) s.resize(p);
  return s;
}

/// The op named in an unsupported message ("op 'X'"), or the message's first words.
std::string unsupported_key(const std::string& s) {
  auto p = s.find("op '");
  if (p != std::string::npos) {
    auto e = s.find('\'', p + 4);
    if (e != std::string::npos) return s.substr(p + 4, e - p - 4);
  }
  if (s.size() > 1 && s[0] == '[') {  // "[Op 'name'] ..." : an attribute or dtype of a known op
    auto sp = s.find(' ');
    if (sp != std::string::npos) return s.substr(1, sp - 1) + " (attribute or dtype)";
  }
  if (s.find("dtype") != std::string::npos) return "dtype";
  return "other";
}

struct Running {
  pid_t pid;
  int fd;
  std::size_t index;
  std::chrono::steady_clock::time_point start;
  std::string buffer;
};

}  // namespace

ConformanceSummary run_conformance(const std::string& dir_str, const ConformanceOptions& opts) {
  const fs::path dir(dir_str);
  if (!fs::is_directory(dir)) throw Error(fmt::format("'{}' is not a directory", dir_str));
  auto tests = discover(dir);
  if (!opts.filter.empty())
    std::erase_if(tests,
                  [&](const TestCase& t) { return t.name.find(opts.filter) == std::string::npos; });
  if (tests.empty()) throw Error(fmt::format("no ONNX tests found under '{}'", dir_str));

  const int jobs = opts.jobs > 0 ? opts.jobs : std::max(1u, std::thread::hardware_concurrency());
  std::vector<Result> results(tests.size());
  std::vector<bool> done(tests.size(), false);
  std::size_t next = 0, printed = 0;
  std::vector<Running> running;
  ConformanceSummary sum;
  std::map<std::string, int> unsupported_by;

  auto print_ready = [&] {
    while (printed < tests.size() && done[printed]) {
      const auto& r = results[printed];
      const auto& name = tests[printed].name;
      switch (r.outcome) {
        case Outcome::pass:
          ++sum.passed;
          if (!opts.quiet) fmt::print("pass {}\n", name);
          break;
        case Outcome::fail:
          ++sum.failed;
          fmt::print("FAIL {}: {}\n", name, opts.verbose ? r.detail : r.detail.substr(0, 400));
          break;
        case Outcome::unsupported:
          ++sum.unsupported;
          ++unsupported_by[unsupported_key(r.detail)];
          if (!opts.quiet)
            fmt::print("unsupported {}: {}\n", name, short_reason(r.detail).substr(0, 300));
          break;
      }
      std::fflush(stdout);
      ++printed;
    }
  };

  while (printed < tests.size()) {
    while (running.size() < static_cast<std::size_t>(jobs) && next < tests.size()) {
      int fds[2];
      if (pipe(fds) != 0) throw Error("pipe() failed");
      std::fflush(stdout);
      pid_t pid = fork();
      if (pid < 0) throw Error("fork() failed");
      if (pid == 0) {
        close(fds[0]);
        Result r = run_one(tests[next]);
        std::string msg = std::to_string(static_cast<int>(r.outcome)) + "\n" + r.detail;
        const char* p = msg.data();
        std::size_t left = msg.size();
        while (left > 0) {
          ssize_t w = write(fds[1], p, left);
          if (w <= 0) break;
          p += w;
          left -= static_cast<std::size_t>(w);
        }
        _exit(0);
      }
      close(fds[1]);
      running.push_back({pid, fds[0], next, std::chrono::steady_clock::now(), {}});
      ++next;
    }
    std::vector<pollfd> pfds;
    for (const auto& r : running) pfds.push_back({r.fd, POLLIN, 0});
    poll(pfds.data(), pfds.size(), 50);
    std::vector<Running> still;
    for (std::size_t k = 0; k < running.size(); ++k) {
      auto& r = running[k];
      bool finished = false;
      if (pfds[k].revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[4096];
        const ssize_t n = read(r.fd, buf, sizeof buf);
        if (n > 0)
          r.buffer.append(buf, static_cast<std::size_t>(n));
        else
          finished = true;
      }
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - r.start).count();
      Result res;
      if (finished) {
        int status = 0;
        waitpid(r.pid, &status, 0);
        const auto nl = r.buffer.find('\n');
        if (WIFSIGNALED(status))
          res = {Outcome::fail, fmt::format("crash: {}", strsignal(WTERMSIG(status)))};
        else if (nl == std::string::npos)
          res = {Outcome::fail, fmt::format("the test process exited with status {} and no result",
                                            WEXITSTATUS(status))};
        else
          res = {static_cast<Outcome>(std::stoi(r.buffer.substr(0, nl))), r.buffer.substr(nl + 1)};
      } else if (elapsed > opts.timeout_s) {
        kill(r.pid, SIGKILL);
        waitpid(r.pid, nullptr, 0);
        res = {Outcome::fail, fmt::format("timeout after {:.0f} s", opts.timeout_s)};
      } else {
        still.push_back(std::move(r));
        continue;
      }
      close(r.fd);
      results[r.index] = std::move(res);
      done[r.index] = true;
    }
    running = std::move(still);
    print_ready();
  }
  if (!unsupported_by.empty()) {
    std::vector<std::pair<int, std::string>> v;
    for (const auto& [k, n] : unsupported_by) v.emplace_back(-n, k);
    std::sort(v.begin(), v.end());
    std::string line;
    for (const auto& [n, k] : v) line += fmt::format("{}{} {}", line.empty() ? "" : ", ", k, -n);
    fmt::print("unsupported by op: {}\n", line);
  }
  fmt::print("{} passed, {} failed, {} unsupported\n", sum.passed, sum.failed, sum.unsupported);
  return sum;
}

}  // namespace kiln::tools
