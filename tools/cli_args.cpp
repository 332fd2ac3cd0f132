#include "cli_args.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "kiln/ir/error.hpp"
#include "kiln/ir/memory.hpp"
#include "kiln/ir/plugin.hpp"

namespace kiln::tools {

namespace {

/// "usage: kiln CMD [OPTIONS] ARGS" first, then the description, the options and the footer.
class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter() {
    label("Usage", "usage");
    column_width(26);
  }
  std::string make_help(const CLI::App* app, std::string name,
                        CLI::AppFormatMode mode) const override {
    std::string out = make_usage(app, name) + "\n" + app->get_description();
    out += make_positionals(app) + make_groups(app, mode);
    if (!app->get_footer().empty()) out += "\n" + make_footer(app);
    return out;
  }
};

}  // namespace

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
    return std::stod(v);
  } catch (const std::exception&) {  // a flag not declared with Command::number
    throw Error(fmt::format("kiln {}: flag {} expects a number, got '{}'", command_, flag, v));
  }
}

std::string Args::one_positional(const std::string& what) const {
  if (positional_.size() != 1)
    throw Error(fmt::format("kiln {}: expected one {}, got {} argument(s) (see kiln {} --help)",
                            command_, what, positional_.size(), command_));
  return positional_[0];
}

Command::Command(const std::string& name, const std::string& description, const std::string& usage)
    : name_(name),
      app_(std::make_unique<CLI::App>(description, "kiln " + (usage.empty() ? name : usage))) {
  app_->formatter(std::make_shared<HelpFormatter>());
  app_->set_help_flag("-h,--help", "print this help");
  app_->allow_extras();  // reported by parse, naming the flag
  // Every command reads files whose numbers size what kiln allocates: one limit for them all.
  app_->add_option("--max-memory",
                   "the most host memory kiln's tensors may hold at once (512M, "
                   "4G, ...; default: 3/4 of physical memory)")
      ->type_name("BYTES");
  // Every command may meet plugin nodes (an ONNX model's, a plan's): their libraries load first.
  app_->add_option("--plugin",
                   "load the plugins of shared library LIB.so first (repeatable; see "
                   "docs/PLUGINS.md)")
      ->type_name("LIB.so")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

Command::~Command() = default;

Command& Command::positionals(const std::string& name, const std::string& help) {
  app_->add_option(name, positional_, help)->type_name("");
  return *this;
}

Command& Command::flag(const std::string& name, const std::string& help) {
  app_->add_flag(name, help);
  return *this;
}

Command& Command::option(const std::string& name, const std::string& value,
                         const std::string& help) {
  app_->add_option(name, help)->type_name(value);
  return *this;
}

Command& Command::repeatable(const std::string& name, const std::string& value,
                             const std::string& help) {
  app_->add_option(name, help)
      ->type_name(value)
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  return *this;
}

Command& Command::number(const std::string& name, const std::string& value,
                         const std::string& help) {
  CLI::Validator is_number = CLI::Number;
  app_->add_option(name, help)->type_name(value)->check(is_number.description(""));
  return *this;
}

Command& Command::footer(const std::string& text) {
  app_->footer(text);
  return *this;
}

std::string Command::help() const { return app_->help(); }

std::optional<Args> Command::parse(const std::vector<std::string>& argv) {
  try {
    app_->parse(std::vector<std::string>(argv.rbegin(), argv.rend()));  // CLI11 takes them reversed
  } catch (const CLI::CallForHelp&) {
    fmt::print("{}", help());
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    throw Error(fmt::format("kiln {}: {} (see kiln {} --help)", name_, e.what(), name_));
  }
  for (const auto& extra : app_->remaining())
    throw Error(fmt::format("kiln {}: unknown {} '{}' (see kiln {} --help)", name_,
                            extra.size() > 1 && extra[0] == '-' ? "flag" : "argument", extra,
                            name_));
  if (const CLI::Option* m = app_->get_option("--max-memory"); m->count() > 0)
    set_host_memory_limit(parse_bytes(m->results().front(), "--max-memory"));
  for (const auto& lib : app_->get_option("--plugin")->results()) {
    try {
      plugin::load_library(lib);
    } catch (const Error& e) {
      throw Error(fmt::format("kiln {}: --plugin: {}", name_, e.what()));
    }
  }
  Args args;
  args.command_ = name_;
  args.positional_ = positional_;
  for (const CLI::Option* o : app_->get_options()) {
    if (o->count() == 0 || o->get_positional()) continue;
    const std::string flag =
        o->get_lnames().empty() ? "-" + o->get_snames().front() : "--" + o->get_lnames().front();
    if (o->get_expected_max() == 0) {
      args.values_.emplace(flag, "1");
    } else {
      for (const auto& v : o->results()) args.values_.emplace(flag, v);
    }
  }
  return args;
}

}  // namespace kiln::tools
