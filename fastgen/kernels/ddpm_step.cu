// (d) DDPM ancestral / DDIM step, elementwise (fastgen.diffusion.ddpm.ancestral_step and ddim_step);
// the maths is steps.cuh's fg_affine_step, shared with the C++ kit.
//
// Both steps, for either prediction type and with or without clipping, are one affine map around an
// optional clamp; the host computes the per-launch constants from the schedule:
//   x0  = a·x + b·m            (m = the network output), clamped to [-1, 1] when clip != 0
//   out = p·x0 + q·x + r·m + s·z
//
// One thread per 4 consecutive elements: one 4-wide read of x and of m (and of z, if given), one 4-wide
// write; the ragged tail of a size that is not a multiple of 4 is done element by element. Counter of the
// in-kernel noise = group index g; its four normals go to elements 4g … 4g+3.
#include "common.cuh"
#include "philox.cuh"
#include "steps.cuh"

template <class T>
__device__ __forceinline__ void fg_load4_tail(const T* __restrict__ p, fg_u64 first, fg_u64 n, float (&out)[4]) {
    if (first + 4 <= n) {
        fg_load<4>(p + first, out);
        return;
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) out[k] = first + k < n ? fg_to_float(p[first + k]) : 0.0f;
}

template <class T>
__device__ __forceinline__ void ddpm_step(const T* __restrict__ x, const T* __restrict__ model_out,
                                          const T* __restrict__ noise, T* __restrict__ out, fg_u64 n, float a,
                                          float b, int clip, float p, float q, float r, float s, int noise_mode,
                                          fg_u64 seed, fg_u64 offset) {
    const fg_u64 groups = (n + 3) / 4;
    for (fg_u64 g = fg_thread_index(); g < groups; g += fg_thread_stride()) {
        const fg_u64 first = 4 * g;
        float xv[4], mv[4], z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        fg_load4_tail(x, first, n, xv);
        fg_load4_tail(model_out, first, n, mv);
        if (noise_mode == FG_NOISE_PHILOX) fg_normal4(seed, offset, g, z);
        else if (noise_mode == FG_NOISE_TENSOR) fg_load4_tail(noise, first, n, z);
        float o[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) o[k] = fg_affine_step(xv[k], mv[k], z[k], a, b, clip != 0, p, q, r, s);
        if (first + 4 <= n) {
            fg_store<4>(out + first, o);
        } else {
#pragma unroll
            for (int k = 0; k < 4; ++k)
                if (first + k < n) out[first + k] = fg_from_float<T>(o[k]);
        }
    }
}

#define FG_DDPM_STEP_ENTRY(NAME, T)                                                                       \
    extern "C" __global__ void __launch_bounds__(256)                                                    \
        NAME(const T* x, const T* model_out, const T* noise, T* out, fg_u64 n, float a, float b, int clip, \
             float p, float q, float r, float s, int noise_mode, fg_u64 seed, fg_u64 offset) {            \
        ddpm_step<T>(x, model_out, noise, out, n, a, b, clip, p, q, r, s, noise_mode, seed, offset);      \
    }

FG_DDPM_STEP_ENTRY(fastgen_ddpm_step_f32, float)
FG_DDPM_STEP_ENTRY(fastgen_ddpm_step_f16, fg_f16)
FG_DDPM_STEP_ENTRY(fastgen_ddpm_step_bf16, fg_bf16)
