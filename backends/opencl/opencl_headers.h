// The one place the Khronos C++ bindings are included, so every translation
// unit sees the same configuration (the build also sets these definitions).
#pragma once

#ifndef CL_HPP_TARGET_OPENCL_VERSION
#define CL_HPP_TARGET_OPENCL_VERSION 300
#endif
// 110, not 120: Debian's opencl.hpp (2023.02.06) only defines
// detail::getContextPlatformVersion for a minimum below 120, yet CommandQueue's
// constructors call it for any minimum below 200. Nothing here uses 1.1-only API.
#ifndef CL_HPP_MINIMUM_OPENCL_VERSION
#define CL_HPP_MINIMUM_OPENCL_VERSION 110
#endif
// Errors are checked by return code and turned into ek::DeviceError with the
// device named, never cl::Error.
#ifdef CL_HPP_ENABLE_EXCEPTIONS
#error "edgekernels checks OpenCL return codes itself; do not define CL_HPP_ENABLE_EXCEPTIONS"
#endif

#include <CL/opencl.hpp>
