// An empty generator program: it exists so the build can emit the one Halide
// runtime that every AOT kernel library of the project links against.
#include <Halide.h>
