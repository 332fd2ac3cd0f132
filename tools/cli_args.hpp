// The options of the kiln subcommands, read with CLI11: each command declares every option once,
// with its help, and `--help` prints them; an unknown flag or a malformed value is an error naming
// the flag.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace kiln::tools {

/// The options given to one command (after Command::parse).
class Args {
 public:
  bool has(const std::string& flag) const { return values_.count(flag) != 0; }
  /// The (first) value of `flag`, or `fallback` when it was not given.
  std::string get(const std::string& flag, const std::string& fallback = "") const;
  /// Every value of a repeatable option, in the order given.
  std::vector<std::string> all(const std::string& flag) const;
  /// The value of a number option (Command::number checked that it is one), or `fallback`.
  double number(const std::string& flag, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }
  /// A copy with `flag`'s values replaced by `value` (kiln bench --sweep runs each shape so).
  Args with(const std::string& flag, const std::string& value) const {
    Args a = *this;
    a.values_.erase(flag);
    a.values_.emplace(flag, value);
    return a;
  }
  /// The single positional argument `what`; an error when it is missing or repeated.
  std::string one_positional(const std::string& what) const;

 private:
  friend class Command;
  std::string command_;
  std::multimap<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

/// One command's options and help. `name` is what follows "kiln" in messages ("bench"); `usage`
/// what follows it in the usage line ("bench" or "run --plan").
class Command {
 public:
  Command(const std::string& name, const std::string& description, const std::string& usage = "");
  ~Command();
  Command(const Command&) = delete;
  Command& operator=(const Command&) = delete;

  /// The positional arguments (any number; Args::one_positional checks for one).
  Command& positionals(const std::string& name, const std::string& help);
  /// --name without a value.
  Command& flag(const std::string& name, const std::string& help);
  /// --name VALUE (or --name=VALUE), at most once.
  Command& option(const std::string& name, const std::string& value, const std::string& help);
  /// --name VALUE, any number of times.
  Command& repeatable(const std::string& name, const std::string& value, const std::string& help);
  /// --name NUMBER, at most once; anything else than a number is an error naming the flag.
  Command& number(const std::string& name, const std::string& value, const std::string& help);
  /// Text printed after the options.
  Command& footer(const std::string& text);

  /// The options in argv (the command's arguments, after its name); nullopt when argv asks for
  /// help (--help or -h), which is then printed. Throws Error naming the flag that is unknown,
  /// lacks its value or has a malformed one.
  std::optional<Args> parse(const std::vector<std::string>& argv);
  /// The text --help prints.
  std::string help() const;

 private:
  std::string name_;
  std::unique_ptr<CLI::App> app_;
  std::vector<std::string> positional_;
};

}  // namespace kiln::tools
