// The Chrome trace (chrome://tracing, Perfetto) of a TraceProfiler's runs.
#include <fmt/format.h>

#include "kiln/runtime/engine.hpp"

namespace kiln::runtime {

namespace {
std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) o += fmt::format("\\u{:04x}", static_cast<int>(c));
    else o += c;
  }
  return o;
}
}  // namespace

std::string TraceProfiler::chrome_trace_json() const {
  std::string s = "{\"traceEvents\": [\n";
  double t = 0;
  bool first = true;
  for (std::size_t r = 0; r < runs_.size(); ++r) {
    for (const auto& st : runs_[r]) {
      s += fmt::format("{}  {{\"name\": \"{}\", \"cat\": \"{}\", \"ph\": \"X\", \"ts\": {:.3f}, \"dur\": {:.3f}, "
                       "\"pid\": 1, \"tid\": 1, \"args\": {{\"op\": \"{}\", \"run\": {}, \"step\": {}}}}}",
                       first ? "" : ",\n", json_escape(st.name), json_escape(st.kind), t, st.ms * 1000.0,
                       json_escape(st.op), r, st.index);
      first = false;
      t += st.ms * 1000.0;
    }
    t += 10.0;  // a gap between runs
  }
  s += "\n], \"displayTimeUnit\": \"ms\"}\n";
  return s;
}

}  // namespace kiln::runtime
