// Host tensors: the dtype/shape/pointer triple every op call is made of, plus an
// owning variant used by tests, benchmarks and the CLI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ek {

enum class DType : uint8_t { f32, f16, i8, u8, i32, i64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
// Parses "f32", "f16", ...; throws InvalidArgument naming `what` on failure.
DType parse_dtype(const std::string& s, const std::string& what);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
// Element count; throws InvalidArgument if a dim is negative or the product overflows.
int64_t shape_numel(const Shape& s, const std::string& what);

// A non-owning view of a dense, row-major (last dim innermost) host tensor.
struct TensorRef {
  DType dtype = DType::f32;
  Shape shape;
  void* data = nullptr;

  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int rank() const { return static_cast<int>(shape.size()); }
  template <class T> T* as() const { return static_cast<T*>(data); }
};

// Describes a tensor without data (used for output shape inference).
struct TensorDesc {
  DType dtype = DType::f32;
  Shape shape;
};

// Owning host tensor, 64-byte aligned so SIMD and device uploads are happy.
// Zeroed host memory, 64-byte aligned; buffers of 2 MiB or more are aligned
// to 2 MiB and advised onto transparent huge pages (EK_HUGEPAGES=0: never).
// Release with std::free.
void* allocate_host_bytes(size_t bytes);

class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, Shape shape);
  TensorRef ref() const { return TensorRef{dtype_, shape_, data_.get()}; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const;
  size_t nbytes() const { return bytes_; }
  void* data() const { return data_.get(); }
  template <class T> T* as() const { return static_cast<T*>(data()); }

 private:
  struct Free { void operator()(void* p) const; };
  DType dtype_ = DType::f32;
  Shape shape_;
  size_t bytes_ = 0;
  std::unique_ptr<void, Free> data_;
};

// IEEE binary16 <-> binary32, round-to-nearest-even; exact for all finite values,
// infinities and NaN.
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

// Reads element i of a f32 or f16 tensor as double (for references and checks).
double load_as_double(const TensorRef& t, int64_t i);

}  // namespace ek
