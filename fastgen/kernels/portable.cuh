// What lets a header be compiled by nvcc/NVRTC (the kernels) and by a plain C++ compiler (the C++ kit's CPU
// path, export/): one function qualifier and the few CUDA vector types the shared maths uses.
// NVRTC has no standard library, so CUDA builds use only builtins; host builds include <math.h>.
#pragma once

typedef unsigned int fg_u32;
typedef unsigned long long fg_u64;

#if defined(__CUDACC__)
#define FG_HD __host__ __device__ __forceinline__
#define FG_UNROLL _Pragma("unroll")
typedef uint2 fg_uint2;
typedef uint4 fg_uint4;
typedef float2 fg_float2;
FG_HD fg_uint2 fg_make_uint2(fg_u32 x, fg_u32 y) { return make_uint2(x, y); }
FG_HD fg_uint4 fg_make_uint4(fg_u32 x, fg_u32 y, fg_u32 z, fg_u32 w) { return make_uint4(x, y, z, w); }
FG_HD fg_float2 fg_make_float2(float x, float y) { return make_float2(x, y); }
#else
#include <math.h>  // fmaf, logf … in the global namespace, as CUDA has them
#define FG_HD inline
#define FG_UNROLL
struct fg_uint2 { fg_u32 x, y; };
struct fg_uint4 { fg_u32 x, y, z, w; };
struct fg_float2 { float x, y; };
FG_HD fg_uint2 fg_make_uint2(fg_u32 x, fg_u32 y) { return {x, y}; }
FG_HD fg_uint4 fg_make_uint4(fg_u32 x, fg_u32 y, fg_u32 z, fg_u32 w) { return {x, y, z, w}; }
FG_HD fg_float2 fg_make_float2(float x, float y) { return {x, y}; }
#endif
