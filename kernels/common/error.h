// Typed errors. Every validation failure names the op and the argument:
// "rms_norm: x has 3 dims, expected 2".
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ek {

enum class Status : int {
  ok = 0,
  invalid_argument = 1,
  unsupported = 2,
  device_error = 3,
  out_of_memory = 4,
  not_found = 5,
  internal = 6,
};

const char* status_name(Status s);

class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& msg) : std::runtime_error(msg), status_(status) {}
  Status status() const { return status_; }

 private:
  Status status_;
};

struct InvalidArgument : Error {
  explicit InvalidArgument(const std::string& m) : Error(Status::invalid_argument, m) {}
};
struct Unsupported : Error {
  explicit Unsupported(const std::string& m) : Error(Status::unsupported, m) {}
};
struct DeviceError : Error {
  explicit DeviceError(const std::string& m) : Error(Status::device_error, m) {}
};
struct OutOfMemory : Error {
  explicit OutOfMemory(const std::string& m) : Error(Status::out_of_memory, m) {}
};
struct NotFound : Error {
  explicit NotFound(const std::string& m) : Error(Status::not_found, m) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... R>
void append(std::ostringstream& o, const T& v, const R&... r) {
  o << v;
  append(o, r...);
}
}  // namespace detail

// Concatenates its arguments with operator<<.
template <class... A>
std::string cat(const A&... a) {
  std::ostringstream o;
  detail::append(o, a...);
  return o.str();
}

}  // namespace ek

// Throws ek::InvalidArgument with the concatenated message when `cond` is false.
#define EK_CHECK_ARG(cond, ...)                                   \
  do {                                                            \
    if (!(cond)) throw ::ek::InvalidArgument(::ek::cat(__VA_ARGS__)); \
  } while (0)
