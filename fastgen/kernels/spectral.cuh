// Helpers for kernels that work on orthonormal real-input DFTs in torch.fft.rfft2's half-spectrum layout:
// an H×W real image is stored as H × (W/2+1) complex values; the other half is X(−f) = conj X(f).
#pragma once
#include "common.cuh"
#include "philox.cuh"

__device__ __forceinline__ float2 fg_cmul(float2 a, float2 b) {
    return make_float2(fmaf(a.x, b.x, -a.y * b.y), fmaf(a.x, b.y, a.y * b.x));
}
__device__ __forceinline__ float2 fg_conj(float2 a) { return make_float2(a.x, -a.y); }
__device__ __forceinline__ float2 fg_scale(float s, float2 a) { return make_float2(s * a.x, s * a.y); }
__device__ __forceinline__ float2 fg_add(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }
__device__ __forceinline__ float fg_norm2(float2 a) { return fmaf(a.x, a.x, a.y * a.y); }

// Where a full-plane frequency (fy, fx) of an H×W grid is stored in the half spectrum, and whether the
// stored value must be conjugated to give X(fy, fx).
struct fg_half_index {
    fg_u32 row, col;
    bool conj;
};
__device__ __forceinline__ fg_half_index fg_half_locate(fg_u32 height, fg_u32 width, fg_u32 fy, fg_u32 fx) {
    if (2 * fx <= width) return {fy, fx, false};
    return {fy == 0 ? 0 : height - fy, width - fx, true};
}

// X(fy, fx) of one H×W image whose half spectrum starts at `plane`.
__device__ __forceinline__ float2 fg_half_at(const float2* __restrict__ plane, fg_u32 height, fg_u32 width,
                                             fg_u32 fy, fg_u32 fx) {
    const fg_half_index at = fg_half_locate(height, width, fy, fx);
    const float2 value = plane[static_cast<fg_u64>(at.row) * (width / 2 + 1) + at.col];
    return at.conj ? fg_conj(value) : value;
}

// The half-spectrum coefficient (ky, kx) of the orthonormal DFT of white N(0, I) noise on an H×W grid,
// image `image`, drawn in place. In the self-paired columns kx = 0 and kx = W/2 (W even) the rows ky and
// H−ky are conjugate: both draw the counter of the smaller row, and the larger row conjugates it; the
// self-conjugate points (ky ∈ {0, H/2}) are real N(0, 1); every other coefficient has real and imaginary
// parts N(0, ½). So irfft2(·, norm="ortho") of the result is exactly white noise.
// Counter: base + (image·H + canonical row)·(W/2+1) + kx; one counter per coefficient (first two normals).
__device__ __forceinline__ float2 fg_hermitian_normal(fg_u64 seed, fg_u64 offset, fg_u64 base, fg_u64 image,
                                                      fg_u32 height, fg_u32 width, fg_u32 ky, fg_u32 kx) {
    const bool paired_column = kx == 0 || 2 * kx == width;
    const fg_u32 partner = ky == 0 ? 0 : height - ky;
    const fg_u32 row = paired_column && partner < ky ? partner : ky;
    const float2 g = fg_normal2(seed, offset, base + (image * height + row) * (width / 2 + 1) + kx);
    if (paired_column && partner == ky) return make_float2(g.x, 0.0f);
    const float2 z = fg_scale(0.70710678118654752f, g);
    return row == ky ? z : fg_conj(z);
}

// The same noise at a full-plane frequency (fy, fx).
__device__ __forceinline__ float2 fg_hermitian_normal_at(fg_u64 seed, fg_u64 offset, fg_u64 base, fg_u64 image,
                                                         fg_u32 height, fg_u32 width, fg_u32 fy, fg_u32 fx) {
    const fg_half_index at = fg_half_locate(height, width, fy, fx);
    const float2 value = fg_hermitian_normal(seed, offset, base, image, height, width, at.row, at.col);
    return at.conj ? fg_conj(value) : value;
}
