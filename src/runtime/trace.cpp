// The Chrome trace (chrome://tracing, Perfetto) of a TraceProfiler's runs.
#include <nlohmann/json.hpp>

#include "kiln/runtime/engine.hpp"

namespace kiln::runtime {

std::string TraceProfiler::chrome_trace_json() const {
  nlohmann::ordered_json events = nlohmann::ordered_json::array();
  double t = 0;
  for (std::size_t r = 0; r < runs_.size(); ++r) {
    for (const auto& st : runs_[r]) {
      events.push_back({{"name", st.name},
                        {"cat", st.kind},
                        {"ph", "X"},
                        {"ts", t},
                        {"dur", st.ms * 1000.0},
                        {"pid", 1},
                        {"tid", 1},
                        {"args", {{"op", st.op}, {"run", r}, {"step", st.index}}}});
      t += st.ms * 1000.0;
    }
    t += 10.0;  // a gap between runs
  }
  return nlohmann::ordered_json{{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}}.dump(
             1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) +
         "\n";
}

}  // namespace kiln::runtime
