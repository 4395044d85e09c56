// (c) Blur diffusion reverse step, the pointwise part (fastgen.diffusion.blur.reverse_step):
//   x̄_{t−1} = c_x·x̄_t + c_eps·ε̄ + c_z·z̄   per frequency,
// between one forward transform of [x, ε̂ (, z)] and one inverse transform, both done by cuFFT (torch.fft)
// on the host side. The coefficients are blur.reverse_step_coefficients, shared by all images.
//
// Two bases, one template: "fourier" spectra are rfft2 half spectra (complex, z̄ drawn with Hermitian
// symmetry, see spectral.cuh), "dct" spectra are real orthonormal DCT-II coefficients (z̄ plain white;
// counter = element index, first normal). One thread per spectral coefficient.
#include "common.cuh"
#include "philox.cuh"
#include "spectral.cuh"
#include "steps.cuh"

struct fg_fourier {
    typedef float2 value;
    __device__ static fg_u32 columns(fg_u32 width) { return width / 2 + 1; }
    __device__ static float2 noise(fg_u64 seed, fg_u64 offset, fg_u64 image, fg_u32 height, fg_u32 width,
                                   fg_u32 ky, fg_u32 kx) {
        return fg_hermitian_normal(seed, offset, 0, image, height, width, ky, kx);
    }
    __device__ static float2 combine(float cx, float2 x, float ce, float2 e, float cz, float2 z) {
        return make_float2(fg_blur_combine(cx, x.x, ce, e.x, cz, z.x), fg_blur_combine(cx, x.y, ce, e.y, cz, z.y));
    }
    __device__ static float2 zero() { return make_float2(0.0f, 0.0f); }
};

struct fg_dct {
    typedef float value;
    __device__ static fg_u32 columns(fg_u32 width) { return width; }
    __device__ static float noise(fg_u64 seed, fg_u64 offset, fg_u64 image, fg_u32 height, fg_u32 width,
                                  fg_u32 ky, fg_u32 kx) {
        return fg_normal2(seed, offset, (image * height + ky) * width + kx).x;
    }
    __device__ static float combine(float cx, float x, float ce, float e, float cz, float z) {
        return fg_blur_combine(cx, x, ce, e, cz, z);
    }
    __device__ static float zero() { return 0.0f; }
};

// spectra: [x̄ | ε̄ | z̄] planes back to back (z̄ only in FG_NOISE_TENSOR mode), each images·H·columns long;
// coefficients: [c_x | c_eps | c_z], each H·columns.
template <class Basis>
__device__ __forceinline__ void blur_step(const typename Basis::value* __restrict__ spectra,
                                          const float* __restrict__ coefficients,
                                          typename Basis::value* __restrict__ out, fg_u64 images, fg_u32 height,
                                          fg_u32 width, int noise_mode, fg_u64 seed, fg_u64 offset) {
    typedef typename Basis::value V;
    const fg_u32 columns = Basis::columns(width);
    const fg_u64 per_image = static_cast<fg_u64>(height) * columns;
    const fg_u64 n = images * per_image;
    for (fg_u64 i = fg_thread_index(); i < n; i += fg_thread_stride()) {
        const fg_u64 image = i / per_image;
        const fg_u32 k = static_cast<fg_u32>(i - image * per_image);
        V z = Basis::zero();
        if (noise_mode == FG_NOISE_PHILOX) z = Basis::noise(seed, offset, image, height, width, k / columns, k % columns);
        else if (noise_mode == FG_NOISE_TENSOR) z = spectra[2 * n + i];
        out[i] = Basis::combine(coefficients[k], spectra[i], coefficients[per_image + k], spectra[n + i],
                                coefficients[2 * per_image + k], z);
    }
}

#define FG_BLUR_STEP_ENTRY(NAME, BASIS)                                                                      \
    extern "C" __global__ void __launch_bounds__(256)                                                       \
        NAME(const BASIS::value* spectra, const float* coefficients, BASIS::value* out, fg_u64 images,      \
             fg_u32 height, fg_u32 width, int noise_mode, fg_u64 seed, fg_u64 offset) {                     \
        blur_step<BASIS>(spectra, coefficients, out, images, height, width, noise_mode, seed, offset);      \
    }

FG_BLUR_STEP_ENTRY(fastgen_blur_step_fourier, fg_fourier)
FG_BLUR_STEP_ENTRY(fastgen_blur_step_dct, fg_dct)
