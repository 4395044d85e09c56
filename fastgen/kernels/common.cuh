// Shared device helpers for fastgen's fused kernels: storage types, 16-bit conversions, packed loads.
//
// Every .cu here is compiled two ways: at run time by NVRTC (fastgen.kernels.loader) and ahead of time by
// nvcc for the C++ kit. NVRTC ships no standard library and no cuda_fp16.h/cuda_bf16.h unless the CUDA
// include directory is on its path, so this header uses only builtins: fixed-width integers are plain
// typedefs and the 16-bit float types are raw storage converted with one PTX instruction each.
#pragma once

#if !defined(__CUDACC__)
#error "fastgen kernels are CUDA sources: compile them with nvcc or NVRTC"
#endif

#include "portable.cuh"

// Storage of torch.float16 / torch.bfloat16: same size and bits, no arithmetic on them.
struct fg_f16 { unsigned short bits; };
struct fg_bf16 { unsigned short bits; };

__device__ __forceinline__ float fg_to_float(float x) { return x; }
__device__ __forceinline__ float fg_to_float(fg_f16 x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}
// bf16 is the top half of a float32, so widening is a shift.
__device__ __forceinline__ float fg_to_float(fg_bf16 x) { return __uint_as_float(static_cast<fg_u32>(x.bits) << 16); }

template <class T> __device__ __forceinline__ T fg_from_float(float x);
template <> __device__ __forceinline__ float fg_from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ fg_f16 fg_from_float<fg_f16>(float x) {
    fg_f16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(x));
    return h;
}
// cvt.rn.bf16.f32 needs sm_80; fastgen's kernels target sm_80 and newer.
template <> __device__ __forceinline__ fg_bf16 fg_from_float<fg_bf16>(float x) {
    fg_bf16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h.bits) : "f"(x));
    return h;
}

// N consecutive elements as one aligned access (float2/float4-wide for fp32, 4/8 bytes for 16-bit types).
// The caller guarantees alignment to N * sizeof(T); the Python side checks it before launching.
template <class T, int N> struct alignas(N * sizeof(T)) fg_pack { T v[N]; };

template <int N, class T>
__device__ __forceinline__ void fg_load(const T* __restrict__ p, float (&out)[N]) {
    const fg_pack<T, N> pack = *reinterpret_cast<const fg_pack<T, N>*>(p);
#pragma unroll
    for (int k = 0; k < N; ++k) out[k] = fg_to_float(pack.v[k]);
}

template <int N, class T>
__device__ __forceinline__ void fg_store(T* __restrict__ p, const float (&in)[N]) {
    fg_pack<T, N> pack;
#pragma unroll
    for (int k = 0; k < N; ++k) pack.v[k] = fg_from_float<T>(in[k]);
    *reinterpret_cast<fg_pack<T, N>*>(p) = pack;
}

// Grid-stride loop bounds in 64 bits: images × channels × pixels can pass 2^32.
__device__ __forceinline__ fg_u64 fg_thread_index() {
    return static_cast<fg_u64>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ fg_u64 fg_thread_stride() { return static_cast<fg_u64>(gridDim.x) * blockDim.x; }

// How a kernel gets its noise; the values are part of the launch ABI (mirrored in fastgen/kernels/ops.py).
enum fg_noise_mode : int {
    FG_NOISE_NONE = 0,    // no noise term
    FG_NOISE_PHILOX = 1,  // drawn in-kernel from (seed, offset), see philox.cuh
    FG_NOISE_TENSOR = 2,  // read from a given white-noise tensor (or its spectrum)
};
