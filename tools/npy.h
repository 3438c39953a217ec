// NumPy .npy files (format 1.0-3.0, C order, little-endian) <-> HostTensor.
#pragma once

#include <string>

#include "kernels/common/tensor.h"

namespace ek {

// Throws InvalidArgument naming the file on any malformed or unsupported input.
HostTensor read_npy(const std::string& path);
void write_npy(const std::string& path, const TensorRef& t);

}  // namespace ek
