// A small argument reader for the kiln subcommands: flags are declared, so that an unknown flag
// is an error naming it.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "kiln/ir/error.hpp"

namespace kiln::tools {

class Args {
 public:
  /// `valued`: flags that take a value (--flag VALUE or --flag=VALUE); `switches`: flags without.
  Args(const std::vector<std::string>& argv, const std::string& command,
       std::set<std::string> valued, std::set<std::string> switches);
  bool has(const std::string& flag) const { return values_.count(flag) != 0; }
  std::string get(const std::string& flag, const std::string& fallback = "") const;
  std::vector<std::string> all(const std::string& flag) const;
  double number(const std::string& flag, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }
  /// The single positional argument `what`; an error when it is missing or repeated.
  std::string one_positional(const std::string& what) const;

 private:
  std::string command_;
  std::multimap<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

/// Whether the arguments ask for a command's help (--help or -h anywhere).
bool wants_help(const std::vector<std::string>& argv);

}  // namespace kiln::tools
