// Einsum equation parsing, shared by the shape rule (src/ir/ops/reduce.cpp) and the reference
// kernel (src/reference/reduce.cpp). Header-only and small.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "kiln/ir/error.hpp"

namespace kiln::ops {

/// A parsed equation. Every axis of every operand carries a label id: letters a-z are 0-25,
/// A-Z are 26-51, and the dims an ellipsis stands for are 52.. (right-aligned across operands,
/// so that they broadcast as numpy does).
struct EinsumSpec {
  static constexpr int kEllipsisBase = 52;
  std::vector<std::vector<int>> inputs;  ///< label of each axis of each operand
  std::vector<int> output;               ///< label of each output axis
  int ellipsis_rank = 0;                 ///< dims the ellipsis stands for (broadcast over operands)
  int num_labels() const { return kEllipsisBase + ellipsis_rank; }
};

inline int einsum_letter_id(char c) {
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= 'A' && c <= 'Z') return 26 + (c - 'A');
  return -1;
}

/// Parses `equation` for operands of the given ranks; throws ShapeError on a malformed equation
/// or one that does not fit the operands.
inline EinsumSpec parse_einsum(const std::string& equation, const std::vector<std::size_t>& ranks) {
  std::string eq;
  for (char c : equation)
    if (!std::isspace(static_cast<unsigned char>(c))) eq += c;
  auto bad = [&](const std::string& why) -> ShapeError {
    return ShapeError("einsum equation '" + equation + "': " + why);
  };
  std::string lhs = eq, rhs;
  const bool explicit_out = eq.find("->") != std::string::npos;
  if (explicit_out) {
    const auto p = eq.find("->");
    lhs = eq.substr(0, p);
    rhs = eq.substr(p + 2);
    if (rhs.find("->") != std::string::npos) throw bad("more than one '->'");
  }
  std::vector<std::string> terms;
  {
    std::string cur;
    for (char c : lhs) {
      if (c == ',') {
        terms.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    terms.push_back(cur);
  }
  if (terms.size() != ranks.size())
    throw bad("has " + std::to_string(terms.size()) + " operand terms but the node has " +
              std::to_string(ranks.size()) + " inputs");

  // Split each term into letters before and after an optional ellipsis.
  struct Term {
    std::vector<int> before, after;
    bool has_ellipsis = false;
  };
  auto parse_term = [&](const std::string& t, const char* what) {
    Term r;
    for (std::size_t i = 0; i < t.size();) {
      if (t.compare(i, 3, "...") == 0) {
        if (r.has_ellipsis)
          throw bad(std::string(what) + " '" + t + "' has more than one ellipsis");
        r.has_ellipsis = true;
        i += 3;
        continue;
      }
      const int id = einsum_letter_id(t[i]);
      if (id < 0) throw bad(std::string("unexpected character '") + t[i] + "'");
      (r.has_ellipsis ? r.after : r.before).push_back(id);
      ++i;
    }
    return r;
  };
  std::vector<Term> parsed;
  std::vector<int> ell_dims(terms.size(), 0);
  EinsumSpec spec;
  for (std::size_t k = 0; k < terms.size(); ++k) {
    parsed.push_back(parse_term(terms[k], "operand"));
    const Term& t = parsed.back();
    const std::size_t letters = t.before.size() + t.after.size();
    if (t.has_ellipsis) {
      if (letters > ranks[k])
        throw bad("operand " + std::to_string(k) + " has rank " + std::to_string(ranks[k]) +
                  ", fewer than its " + std::to_string(letters) + " subscripts");
      ell_dims[k] = static_cast<int>(ranks[k] - letters);
    } else if (letters != ranks[k]) {
      throw bad("operand " + std::to_string(k) + " has rank " + std::to_string(ranks[k]) + " but " +
                std::to_string(letters) + " subscripts");
    }
    spec.ellipsis_rank = std::max(spec.ellipsis_rank, ell_dims[k]);
  }
  const int E = spec.ellipsis_rank;
  std::vector<int> count(52, 0);
  bool any_ellipsis = false;
  for (std::size_t k = 0; k < parsed.size(); ++k) {
    const Term& t = parsed[k];
    std::vector<int> axes = t.before;
    for (int j = 0; j < ell_dims[k]; ++j)
      axes.push_back(EinsumSpec::kEllipsisBase + E - ell_dims[k] + j);
    axes.insert(axes.end(), t.after.begin(), t.after.end());
    for (int id : t.before) ++count[id];
    for (int id : t.after) ++count[id];
    any_ellipsis |= t.has_ellipsis;
    spec.inputs.push_back(std::move(axes));
  }
  if (explicit_out) {
    const Term o = parse_term(rhs, "output");
    std::vector<int> seen(52, 0);
    for (int id : o.before) ++seen[id];
    for (int id : o.after) ++seen[id];
    for (int id = 0; id < 52; ++id) {
      if (seen[id] > 1) throw bad("output repeats a subscript");
      if (seen[id] && !count[id]) throw bad("output subscript does not appear in any operand");
    }
    spec.output = o.before;
    if (o.has_ellipsis)
      for (int j = 0; j < E; ++j) spec.output.push_back(EinsumSpec::kEllipsisBase + j);
    else if (E > 0)
      throw bad("operands have ellipsis dims but the output has no ellipsis");
    spec.output.insert(spec.output.end(), o.after.begin(), o.after.end());
  } else {
    if (any_ellipsis)
      for (int j = 0; j < E; ++j) spec.output.push_back(EinsumSpec::kEllipsisBase + j);
    // Letters that appear once, in alphabetical (ASCII) order: upper case first.
    for (int id = 26; id < 52; ++id)
      if (count[id] == 1) spec.output.push_back(id);
    for (int id = 0; id < 26; ++id)
      if (count[id] == 1) spec.output.push_back(id);
  }
  return spec;
}

}  // namespace kiln::ops
