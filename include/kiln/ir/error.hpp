// kiln error types. Every error a user can cause is one of these; none is an assert.
#pragma once

#include <stdexcept>
#include <string>

namespace kiln {

/// Base of every error kiln throws on bad input or a failed library call.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A shape rule was violated (while building a network or inferring shapes).
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A graph is malformed: unknown value, cycle, wrong input count, bad attribute.
class GraphError : public Error {
 public:
  using Error::Error;
};

/// A file (model, tensor, weights, plan) is truncated, corrupt or of the wrong kind.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// An op, dtype or attribute that kiln declares unsupported.
class UnsupportedError : public Error {
 public:
  using Error::Error;
};

/// An allocation that a file's or model's numbers size would pass kiln's host memory limit (or
/// its size does not fit in 64 bits). The message names the tensor, its dims and the bytes.
class MemoryLimitError : public Error {
 public:
  using Error::Error;
};

/// Weights that do not match what the network expects (missing, wrong size, bad values).
class WeightError : public Error {
 public:
  using Error::Error;
};

}  // namespace kiln
