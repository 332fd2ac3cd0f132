#include "cli_args.hpp"

#include <fmt/format.h>

namespace kiln::tools {

Args::Args(const std::vector<std::string>& argv, const std::string& command,
           std::set<std::string> valued, std::set<std::string> switches)
    : command_(command) {
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() > 1 && a[0] == '-' && !(a.size() > 1 && (std::isdigit(a[1]) || a[1] == '.'))) {
      std::string flag = a, value;
      bool inline_value = false;
      if (auto eq = a.find('='); eq != std::string::npos) {
        flag = a.substr(0, eq);
        value = a.substr(eq + 1);
        inline_value = true;
      }
      if (valued.count(flag)) {
        if (!inline_value) {
          if (i + 1 >= argv.size())
            throw Error(fmt::format("kiln {}: flag {} needs a value", command_, flag));
          value = argv[++i];
        }
        values_.emplace(flag, value);
      } else if (switches.count(flag) && !inline_value) {
        values_.emplace(flag, "1");
      } else {
        throw Error(fmt::format("kiln {}: unknown flag '{}' (see kiln {} --help)", command_, a, command_));
      }
    } else {
      positional_.push_back(a);
    }
  }
}

std::string Args::get(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second;
}

std::vector<std::string> Args::all(const std::string& flag) const {
  std::vector<std::string> v;
  auto [b, e] = values_.equal_range(flag);
  for (auto it = b; it != e; ++it) v.push_back(it->second);
  return v;
}

double Args::number(const std::string& flag, double fallback) const {
  if (!has(flag)) return fallback;
  const std::string v = get(flag);
  try {
    std::size_t pos = 0;
    double d = std::stod(v, &pos);
    if (pos != v.size()) throw std::invalid_argument(v);
    return d;
  } catch (const std::exception&) {
    throw Error(fmt::format("kiln {}: flag {} expects a number, got '{}'", command_, flag, v));
  }
}

std::string Args::one_positional(const std::string& what) const {
  if (positional_.size() != 1)
    throw Error(fmt::format("kiln {}: expected one {}, got {} argument(s) (see kiln {} --help)",
                            command_, what, positional_.size(), command_));
  return positional_[0];
}

bool wants_help(const std::vector<std::string>& argv) {
  for (const auto& s : argv)
    if (s == "--help" || s == "-h") return true;
  return false;
}

}  // namespace kiln::tools
