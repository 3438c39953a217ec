#include "kernels/common/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "kernels/common/error.h"

namespace ek {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::i8: return 1;
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::i8: return "i8";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

DType parse_dtype(const std::string& s, const std::string& what) {
  for (DType t : {DType::f32, DType::f16, DType::i8, DType::u8, DType::i32, DType::i64})
    if (s == dtype_name(t)) return t;
  throw InvalidArgument(cat(what, ": unknown dtype '", s, "'"));
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : s) {
    EK_CHECK_ARG(d >= 0, what, ": negative dimension in shape ", shape_str(s));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw InvalidArgument(cat(what, ": shape ", shape_str(s), " overflows 64-bit element count"));
    n *= d;
  }
  return n;
}

int64_t TensorRef::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void HostTensor::Free::operator()(void* p) const { std::free(p); }

void* allocate_host_bytes(size_t bytes) {
  constexpr size_t kHugePage = size_t(2) << 20;
  // Large buffers (repacked weights, KV caches, states) are streamed once per
  // token: on 2 MiB transparent huge pages their TLB misses vanish. Opt out
  // with EK_HUGEPAGES=0.
  static const bool huge_ok = [] {
    const char* e = std::getenv("EK_HUGEPAGES");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  const bool huge = huge_ok && bytes >= kHugePage;
  const size_t align = huge ? kHugePage : 64;
  size_t alloc = (bytes + align - 1) / align * align;
  if (alloc == 0) alloc = 64;
  void* p = std::aligned_alloc(align, alloc);
  if (!p) throw OutOfMemory(cat("host allocation of ", alloc, " bytes failed"));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) madvise(p, alloc, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  std::memset(p, 0, alloc);  // first touch here, not inside a timed kernel
  return p;
}

HostTensor::HostTensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  bytes_ = static_cast<size_t>(shape_numel(shape_, "tensor")) * dtype_size(dtype_);
  data_.reset(allocate_host_bytes(bytes_));
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // Inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u | ((absx >> 13) & 0x3ffu) : 0));
  }
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to Inf
  if (absx < 0x38800000u) {  // subnormal or zero in f16
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);  // < half of smallest subnormal
    const uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(absx >> 23);  // 14..24
    const uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    uint32_t r = q + ((rem > half || (rem == half && (q & 1))) ? 1 : 0);
    return static_cast<uint16_t>(sign | r);
  }
  const uint32_t exp = ((absx >> 23) - 112) << 10;
  const uint32_t mant = (absx >> 13) & 0x3ffu;
  const uint32_t rem = absx & 0x1fffu;
  uint32_t r = exp | mant;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) ++r;
  return static_cast<uint16_t>(sign | r);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { ++e; mant <<= 1; } while ((mant & 0x400u) == 0);
      x = sign | static_cast<uint32_t>(112 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | mant << 13;
  } else {
    x = sign | (exp + 112) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

double load_as_double(const TensorRef& t, int64_t i) {
  switch (t.dtype) {
    case DType::f32: return static_cast<const float*>(t.data)[i];
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(t.data)[i]);
    case DType::i8: return static_cast<const int8_t*>(t.data)[i];
    case DType::u8: return static_cast<const uint8_t*>(t.data)[i];
    case DType::i32: return static_cast<const int32_t*>(t.data)[i];
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(t.data)[i]);
  }
  return 0;
}

}  // namespace ek
