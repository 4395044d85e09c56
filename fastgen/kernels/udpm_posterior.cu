// (a) UDPM exact posterior step for a 2×2 Lemma-1 kernel (DESIGN.md "UDPM posterior, exact").
//
// H x = taps · block (one value of x_l per 2×2 block of x_{l-1}), Hᵀ y = y · taps and P = HᵀH projects each
// block onto the taps (for the box, taps = ½ and P takes the block mean). Per block, with v = x̂, y = x_l,
// d = taps·v, e the noise and de = taps·e, the host folds the schedule into five constants:
//   x_{l-1} = kx·v + taps·(kp·d + ky·y) + ke·e + taps·(kep·de)
// kx = ᾱ_{l-1}, kp = −gain·α_l·ᾱ_{l-1}, ky = gain, ke = √(1/B), kep = √(1/(A+B)) − √(1/B).
// At level 1 they are (1, 0, 0, 0, 0) and the fmas return x̂ bit for bit (no 1/σ̃_0 = ∞ anywhere).
// The block maths is steps.cuh's fg_udpm_posterior_block, shared with the C++ kit.
//
// One thread per 2×2 block: one read of x_l, two 2-wide reads of x̂ (and of the noise, if given), two
// 2-wide writes. Counter of the in-kernel noise = block index b (row-major over [B, C, h, w]); its four
// normals go to (top-left, top-right, bottom-left, bottom-right).
#include "common.cuh"
#include "philox.cuh"
#include "steps.cuh"

template <class T>
__device__ __forceinline__ void udpm_posterior(const T* __restrict__ x_l, const T* __restrict__ x_hat,
                                               const T* __restrict__ noise, T* __restrict__ out, fg_u64 blocks,
                                               fg_u32 width, float w0, float w1, float w2, float w3, float kx,
                                               float kp, float ky, float ke, float kep, int noise_mode,
                                               fg_u64 seed, fg_u64 offset) {
    const float taps[4] = {w0, w1, w2, w3};
    for (fg_u64 b = fg_thread_index(); b < blocks; b += fg_thread_stride()) {
        // b = row·w + j with row = (image, channel, i): x̂'s 2×2 block starts at row·4w + 2j.
        const fg_u64 row = b / width;
        const fg_u64 top = row * 4 * width + 2 * (b - row * width);
        const fg_u64 bottom = top + 2 * width;
        const float y = fg_to_float(x_l[b]);
        float v[4], upper[2], lower[2];
        fg_load<2>(x_hat + top, upper);
        fg_load<2>(x_hat + bottom, lower);
        v[0] = upper[0]; v[1] = upper[1]; v[2] = lower[0]; v[3] = lower[1];

        float o[4], e[4];
        if (noise_mode == FG_NOISE_PHILOX) {
            fg_normal4(seed, offset, b, e);
        } else if (noise_mode == FG_NOISE_TENSOR) {
            fg_load<2>(noise + top, upper);
            fg_load<2>(noise + bottom, lower);
            e[0] = upper[0]; e[1] = upper[1]; e[2] = lower[0]; e[3] = lower[1];
        }
        fg_udpm_posterior_block(taps, v, noise_mode == FG_NOISE_NONE ? nullptr : e, 4, y, kx, kp, ky, ke, kep, o);
        upper[0] = o[0]; upper[1] = o[1]; lower[0] = o[2]; lower[1] = o[3];
        fg_store<2>(out + top, upper);
        fg_store<2>(out + bottom, lower);
    }
}

// One entry point per storage type, all from the one template; C names so the C++ kit and NVRTC agree.
#define FG_UDPM_POSTERIOR_ENTRY(NAME, T)                                                                    \
    extern "C" __global__ void __launch_bounds__(256)                                                      \
        NAME(const T* x_l, const T* x_hat, const T* noise, T* out, fg_u64 blocks, fg_u32 width, float w0,  \
             float w1, float w2, float w3, float kx, float kp, float ky, float ke, float kep, int noise_mode, \
             fg_u64 seed, fg_u64 offset) {                                                                 \
        udpm_posterior<T>(x_l, x_hat, noise, out, blocks, width, w0, w1, w2, w3, kx, kp, ky, ke, kep,      \
                          noise_mode, seed, offset);                                                       \
    }

FG_UDPM_POSTERIOR_ENTRY(fastgen_udpm_posterior_f32, float)
FG_UDPM_POSTERIOR_ENTRY(fastgen_udpm_posterior_f16, fg_f16)
FG_UDPM_POSTERIOR_ENTRY(fastgen_udpm_posterior_bf16, fg_bf16)
