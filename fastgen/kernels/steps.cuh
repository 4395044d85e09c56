// The per-element maths of the sampling program's steps (export/PROGRAM.md), written once: the fused kernels
// (ddpm_step.cu, udpm_posterior.cu, blur_step.cu) and the C++ kit's CPU loops (export/src/ops.cpp) both call
// these functions, so the GPU path, the CPU path and the Python reference (fastgen.diffusion) share one source.
#pragma once
#include "portable.cuh"

// `denoise_chain` affine step (DDPM ancestral, DDIM, PDDPM): m the network output, z the step's noise (0 if none).
//   x0 = a·x + b·m (clamped to [-1, 1] when clip),  out = p·x0 + q·x + r·m + s·z
FG_HD float fg_affine_step(float x, float m, float z, float a, float b, bool clip, float p, float q, float r, float s) {
    float x0 = fmaf(a, x, b * m);
    if (clip) x0 = fminf(fmaxf(x0, -1.0f), 1.0f);
    return fmaf(p, x0, fmaf(q, x, fmaf(r, m, s * z)));
}

// `udpm_posterior` on one γ×γ block (`count` = γ² values, row-major): v = the block of x̂, y = x_l there,
// e = the block's noise (nullptr: not noisy), taps = the Lemma-1 kernel. Writes the block of x_{l-1} to out:
//   d = Σ taps·v,  de = Σ taps·e,  out = kx·v + taps·(kp·d + ky·y) + ke·e + taps·(kep·de)
FG_HD void fg_udpm_posterior_block(const float* taps, const float* v, const float* e, int count, float y, float kx,
                                   float kp, float ky, float ke, float kep, float* out) {
    float d = 0.0f;
FG_UNROLL
    for (int k = 0; k < count; ++k) d = fmaf(taps[k], v[k], d);
    const float range = fmaf(kp, d, ky * y);
FG_UNROLL
    for (int k = 0; k < count; ++k) out[k] = fmaf(kx, v[k], taps[k] * range);
    if (e == nullptr) return;
    float de = 0.0f;
FG_UNROLL
    for (int k = 0; k < count; ++k) de = fmaf(taps[k], e[k], de);
    const float range_noise = kep * de;
FG_UNROLL
    for (int k = 0; k < count; ++k) out[k] = fmaf(ke, e[k], fmaf(taps[k], range_noise, out[k]));
}

// `denoise_chain` blur step, per frequency k of step i (computed once per program, in float64):
//   ln a = log_alpha + 2·power·ln d_k,  ln ā = log_alpha_cumprod + 2·power_cumsum·ln d_k,
//   c_x = 2 − √a,  c_eps = −(1−a)/√(1−ā),  c_z = √(1−a)
struct fg_blur_coefficients {
    float x, eps, z;
};
FG_HD fg_blur_coefficients fg_blur_step_coefficients(double log_alpha, double power, double log_alpha_cumprod,
                                                     double power_cumsum, double log_eigenvalue) {
    const double log_a = log_alpha + 2.0 * power * log_eigenvalue;
    const double log_abar = log_alpha_cumprod + 2.0 * power_cumsum * log_eigenvalue;
    const double one_minus_a = -expm1(log_a), one_minus_abar = -expm1(log_abar);
    return {static_cast<float>(2.0 - exp(0.5 * log_a)), static_cast<float>(-one_minus_a / sqrt(one_minus_abar)),
            static_cast<float>(sqrt(one_minus_a))};
}
// The spectral combination of one coefficient (a real DCT value, or one part of a complex Fourier value).
FG_HD float fg_blur_combine(float cx, float x, float ce, float e, float cz, float z) {
    return fmaf(cx, x, fmaf(ce, e, cz * z));
}

// `udpm_matheron` (a circulant kernel's UDPM posterior by Matheron's rule) per DFT frequency, in float64: the C++
// kit's CPU loops (ops.cpp) and its cuFFT path (export/src/gpu_spectral.cu) call these between their transforms.
// Complex values are (re, im) pairs, the layout of std::complex<double> and cufftDoubleComplex. F = unnormalised
// DFT, ŵ the transfer function and ĉ the prior covariance's eigenvalues at a high-res frequency f, g = f's
// low-res alias class (size γ²), fold = the sum over a class, in row-major order of f.
struct fg_complex {
    double re, im;
};
FG_HD fg_complex fg_zmul(fg_complex a, fg_complex b) { return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re}; }
FG_HD fg_complex fg_zscale(double s, fg_complex a) { return {s * a.re, s * a.im}; }
FG_HD fg_complex fg_zadd(fg_complex a, fg_complex b) { return {a.re + b.re, a.im + b.im}; }
// At f: the prior's noise spectrum E = √ĉ F(e) (noise: F(e), or nullptr when not noisy), ŵ E and ŵ F(x̂).
struct fg_matheron_high {
    fg_complex prior_noise, weighted_noise, weighted_mean;
};
FG_HD fg_matheron_high fg_matheron_high_terms(fg_complex transfer, double prior_cov, fg_complex hat, const fg_complex* noise) {
    const fg_complex prior_noise = noise != nullptr ? fg_zscale(sqrt(prior_cov), *noise) : fg_complex{0.0, 0.0};
    return {prior_noise, fg_zmul(transfer, prior_noise), fg_zmul(transfer, hat)};
}
// At g: R = (F(x_l) − α ᾱ fold(ŵ F(x̂))/γ² − P) / c_l with P = α fold(ŵ E)/γ² + σ F(e′) (noise_prime: F(e′), or
// nullptr when not noisy) and c_l = α² fold(|ŵ|² ĉ)/γ² + σ² (the evidence, a constant of the op).
FG_HD fg_complex fg_matheron_residual(fg_complex low, fg_complex mean_fold, fg_complex noise_fold, const fg_complex* noise_prime,
                                      double evidence, double alpha, double sigma, double prior_scale, double gamma2) {
    fg_complex predicted = {0.0, 0.0};
    if (noise_prime != nullptr) predicted = fg_zadd(fg_zscale(alpha / gamma2, noise_fold), fg_zscale(sigma, *noise_prime));
    const double mean_scale = alpha * prior_scale / gamma2;
    return {(low.re - mean_scale * mean_fold.re - predicted.re) / evidence, (low.im - mean_scale * mean_fold.im - predicted.im) / evidence};
}
// At f: the spectrum of the correction, E + α ĉ conj(ŵ) R(g); x_{l-1} = ᾱ x̂ + Re F⁻¹(it).
FG_HD fg_complex fg_matheron_update(fg_complex prior_noise, fg_complex transfer, double prior_cov, fg_complex residual, double alpha) {
    return fg_zadd(prior_noise, fg_zscale(alpha * prior_cov, fg_zmul({transfer.re, -transfer.im}, residual)));
}
// x_{l-1} at one pixel, from x̂ there and the real part of F⁻¹(the update)/(H·W) there.
FG_HD float fg_matheron_output(float prior_scale, float hat, double correction) {
    return fmaf(prior_scale, hat, static_cast<float>(correction));
}
FG_HD double fg_matheron_evidence(double weighted_fold, double alpha, double sigma, double gamma2) {
    return alpha * alpha * weighted_fold / gamma2 + sigma * sigma;
}

// `upsample` ×2 bilinear, half-pixel centres, along one axis of length n: output o reads inputs i0, i1 with
// weights w0, w1 (indices clamped to [0, n−1]), as torch's interpolate(mode="bilinear", align_corners=False).
struct fg_upsample_taps {
    fg_u32 i0, i1;
    float w0, w1;
};
FG_HD fg_upsample_taps fg_upsample_axis(fg_u32 n, fg_u32 o) {
    const fg_u32 j = o / 2;
    if (o % 2 == 0) return {j == 0 ? 0u : j - 1, j, 0.25f, 0.75f};
    return {j, j + 1 < n ? j + 1 : n - 1, 0.75f, 0.25f};
}
// One output pixel from the four inputs at (rows.i0|i1, cols.i0|i1): rows first, as torch combines them.
FG_HD float fg_upsample_pixel(fg_upsample_taps rows, fg_upsample_taps cols, float top_left, float top_right,
                              float bottom_left, float bottom_right) {
    return rows.w0 * (cols.w0 * top_left + cols.w1 * top_right) + rows.w1 * (cols.w0 * bottom_left + cols.w1 * bottom_right);
}

// `renoise` (CCDF restart) and an unfiltered `noise` op: out = signal·x + noise_scale·z.
FG_HD float fg_renoise(float x, float z, float signal, float noise_scale) { return fmaf(signal, x, noise_scale * z); }
