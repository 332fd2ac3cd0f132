// expect_error<E>(f, parts): f must throw the kiln error E (or a subclass) whose message holds
// every one of `parts`. Any other exception (std::out_of_range, std::bad_alloc...) fails the test
// with its type and message: kiln must not leak foreign exceptions.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "kiln/ir/error.hpp"

namespace kiln::test {

template <class E>
void expect_error(const std::function<void()>& f, std::vector<std::string> parts) {
  try {
    f();
    FAIL("no error thrown; expected " << std::string(typeid(E).name()));
  } catch (const Error& e) {
    const std::string msg = e.what();
    if constexpr (!std::is_same_v<E, Error>)
      if (!dynamic_cast<const E*>(&e))
        FAIL("wrong kiln error type " << std::string(typeid(e).name()) << ": " << msg);
    INFO("message: " << msg);
    for (const auto& p : parts)
      CHECK_MESSAGE(msg.find(p) != std::string::npos, "missing '" << p << "'");
  } catch (const std::exception& e) {
    FAIL("foreign exception " << std::string(typeid(e).name()) << ": " << std::string(e.what()));
  }
}

}  // namespace kiln::test
