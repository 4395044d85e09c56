// (b) UDPM posterior for any circulant kernel, by Matheron's rule in the DFT (DESIGN.md "General kernels,
// by FFT"; fastgen.diffusion.udpm.CirculantUDPM.matheron_step is the reference):
//   x_pr = ᾱ_{l-1}·x̂ + C_{l-1}^½ e,   y = α_l H x_pr + σ_l e',   x_{l-1} = x_pr + α_l C_{l-1} Hᵀ C_l⁻¹ (x_l − y).
// With orthonormal DFTs, ŵ the transfer function of the blur before subsampling on the high-res grid and
// ĉ the eigenvalues of C_{l-1}, a low-res frequency g couples exactly its four aliases f (g + (0|h, 0|w)):
//   Y(g) = ½ α Σ_f ŵ(f) X_pr(f) + σ E'(g),   ĉ_l(g) = ¼ α² Σ_f |ŵ(f)|² ĉ(f) + σ²,
//   X_out(f) = X_pr(f) + ½ α ĉ(f) conj(ŵ(f)) (X_l(g) − Y(g)) / ĉ_l(g).
// So one thread per low-res frequency g does the whole step for its alias group: one read of each input
// coefficient, one write of each output coefficient, noise drawn in the spectral domain.
//
// Layout: rfft2 half spectra (spectral.cuh). The high-res grid is 2h × 2w (stored 2h × (w+1)), the low-res
// grid h × w (stored h × (w/2+1)); threads cover the stored low-res coefficients. An alias with column
// g_x + w > w is stored conjugated at the mirrored position; for w even and g_x = w/2 that mirrored
// position is another thread's own alias, so only that thread writes it.
// In-kernel noise: e on the high-res grid with counter base 0, e' on the low-res grid with counter base
// images·2h·(w+1) (fg_hermitian_normal's numbering). FG_NOISE_TENSOR reads their spectra instead.
#include "common.cuh"
#include "philox.cuh"
#include "spectral.cuh"

__device__ __forceinline__ void udpm_matheron(const float2* __restrict__ high, const float2* __restrict__ low,
                                              const float2* __restrict__ transfer,
                                              const float* __restrict__ prior_cov, float2* __restrict__ out,
                                              fg_u64 images, fg_u32 h, fg_u32 w, float alpha, float sigma,
                                              float prior_scale, int noise_mode, fg_u64 seed, fg_u64 offset) {
    const fg_u32 high_h = 2 * h, high_w = 2 * w, high_cols = w + 1, low_cols = w / 2 + 1;
    const fg_u64 high_plane = static_cast<fg_u64>(high_h) * high_cols, low_plane = static_cast<fg_u64>(h) * low_cols;
    const fg_u64 n = images * low_plane;
    // [x̂ spectra | e spectra] and [x_l spectra | e' spectra], the noise halves only in FG_NOISE_TENSOR mode.
    const float2* high_noise = high + images * high_plane;
    const float2* low_noise = low + n;
    for (fg_u64 i = fg_thread_index(); i < n; i += fg_thread_stride()) {
        const fg_u64 image = i / low_plane;
        const fg_u32 k = static_cast<fg_u32>(i - image * low_plane);
        const fg_u32 gy = k / low_cols, gx = k % low_cols;

        float2 prior[4], gain[4];  // X_pr(f) and ĉ(f)·conj(ŵ(f)) per alias
        float2 predicted = make_float2(0.0f, 0.0f);
        float evidence = 0.0f;
#pragma unroll
        for (int a = 0; a < 4; ++a) {
            const fg_u32 fy = gy + (a >> 1) * h, fx = gx + (a & 1) * w;
            const fg_half_index at = fg_half_locate(high_h, high_w, fy, fx);
            const fg_u64 stored = static_cast<fg_u64>(at.row) * high_cols + at.col;
            const float2 wf = at.conj ? fg_conj(transfer[stored]) : transfer[stored];
            const float cf = prior_cov[stored];  // ĉ is real and even: no conjugation
            float2 xf = fg_scale(prior_scale, fg_half_at(high + image * high_plane, high_h, high_w, fy, fx));
            if (noise_mode != FG_NOISE_NONE) {
                const float2 e = noise_mode == FG_NOISE_PHILOX
                                     ? fg_hermitian_normal_at(seed, offset, 0, image, high_h, high_w, fy, fx)
                                     : fg_half_at(high_noise + image * high_plane, high_h, high_w, fy, fx);
                xf = fg_add(xf, fg_scale(sqrtf(cf), e));
            }
            prior[a] = xf;
            gain[a] = fg_scale(cf, fg_conj(wf));
            predicted = fg_add(predicted, fg_cmul(wf, xf));
            evidence = fmaf(fg_norm2(wf), cf, evidence);
        }
        predicted = fg_scale(0.5f * alpha, predicted);
        if (noise_mode == FG_NOISE_PHILOX)
            predicted = fg_add(predicted, fg_scale(sigma, fg_hermitian_normal(seed, offset, images * high_plane,
                                                                              image, h, w, gy, gx)));
        else if (noise_mode == FG_NOISE_TENSOR)
            predicted = fg_add(predicted, fg_scale(sigma, low_noise[i]));
        evidence = fmaf(0.25f * alpha * alpha, evidence, sigma * sigma);
        const float2 residual = fg_scale(0.5f * alpha / evidence,
                                         make_float2(low[i].x - predicted.x, low[i].y - predicted.y));

        float2* image_out = out + image * high_plane;
#pragma unroll
        for (int a = 0; a < 4; ++a) {
            const fg_u32 fy = gy + (a >> 1) * h, fx = gx + (a & 1) * w;
            if ((a & 1) && 2 * gx == w) continue;  // owned by the thread of the mirrored frequency
            const fg_half_index at = fg_half_locate(high_h, high_w, fy, fx);
            const float2 value = fg_add(prior[a], fg_cmul(gain[a], residual));
            image_out[static_cast<fg_u64>(at.row) * high_cols + at.col] = at.conj ? fg_conj(value) : value;
        }
    }
}

extern "C" __global__ void __launch_bounds__(256)
    fastgen_udpm_matheron(const float2* high, const float2* low, const float2* transfer, const float* prior_cov,
                          float2* out, fg_u64 images, fg_u32 h, fg_u32 w, float alpha, float sigma,
                          float prior_scale, int noise_mode, fg_u64 seed, fg_u64 offset) {
    udpm_matheron(high, low, transfer, prior_cov, out, images, h, w, alpha, sigma, prior_scale, noise_mode, seed,
                  offset);
}
