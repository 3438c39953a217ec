#include "tools/npy.h"

#include <cstring>
#include <fstream>
#include <regex>

#include "kernels/common/error.h"

namespace ek {
namespace {

const char* descr_of(DType t) {
  switch (t) {
    case DType::f32: return "<f4";
    case DType::f16: return "<f2";
    case DType::i8: return "|i1";
    case DType::u8: return "|u1";
    case DType::i32: return "<i4";
    case DType::i64: return "<i8";
  }
  return "";
}

DType dtype_of(const std::string& descr, const std::string& path) {
  for (DType t : {DType::f32, DType::f16, DType::i8, DType::u8, DType::i32, DType::i64}) {
    std::string d = descr_of(t);
    if (descr == d || (d[0] == '|' && descr == "<" + d.substr(1)) || (d[0] == '|' && descr == "=" + d.substr(1)))
      return t;
  }
  throw InvalidArgument(cat(path, ": unsupported npy dtype '", descr,
                            "' (supported: <f4, <f2, |i1, |u1, <i4, <i8, little-endian)"));
}

}  // namespace

HostTensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EK_CHECK_ARG(static_cast<bool>(in), path, ": cannot open");
  char magic[8];
  in.read(magic, 8);
  EK_CHECK_ARG(in && std::memcmp(magic, "\x93NUMPY", 6) == 0, path, ": not a .npy file");
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    in.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t(b[3]) << 24);
  } else {
    throw InvalidArgument(cat(path, ": unsupported .npy version ", major));
  }
  EK_CHECK_ARG(in && header_len < (1u << 20), path, ": truncated header");
  std::string header(header_len, '\0');
  in.read(&header[0], header_len);
  EK_CHECK_ARG(static_cast<bool>(in), path, ": truncated header");

  std::smatch m;
  EK_CHECK_ARG(std::regex_search(header, m, std::regex("'descr'\\s*:\\s*'([^']*)'")), path, ": header has no descr");
  const DType dtype = dtype_of(m[1], path);
  EK_CHECK_ARG(std::regex_search(header, m, std::regex("'fortran_order'\\s*:\\s*(True|False)")), path,
               ": header has no fortran_order");
  EK_CHECK_ARG(m[1] == "False", path, ": Fortran-order arrays are not supported (save with np.ascontiguousarray)");
  EK_CHECK_ARG(std::regex_search(header, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)")), path,
               ": header has no shape");
  Shape shape;
  const std::string dims = m[1];
  const std::regex number("\\d+");
  std::sregex_iterator it(dims.begin(), dims.end(), number), end;
  for (; it != end; ++it) shape.push_back(std::stoll(it->str()));
  shape_numel(shape, path);

  HostTensor t(dtype, shape);
  in.read(static_cast<char*>(t.data()), static_cast<std::streamsize>(t.nbytes()));
  EK_CHECK_ARG(in.gcount() == static_cast<std::streamsize>(t.nbytes()), path, ": data is shorter than shape ",
               shape_str(shape), " needs (", t.nbytes(), " bytes)");
  return t;
}

void write_npy(const std::string& path, const TensorRef& t) {
  std::string shape;
  for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
  if (t.shape.size() == 1) shape += ",";  // Python's one-element tuple
  std::string header = cat("{'descr': '", descr_of(t.dtype), "', 'fortran_order': False, 'shape': (", shape, "), }");
  // Pad so data starts on a 64-byte boundary; the header ends with '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  EK_CHECK_ARG(static_cast<bool>(out), path, ": cannot open for writing");
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char lenb[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(lenb, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(t.nbytes()));
  EK_CHECK_ARG(static_cast<bool>(out), path, ": write failed");
}

}  // namespace ek
