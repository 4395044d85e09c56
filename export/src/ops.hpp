// The program's step ops on the CPU, over float32 buffers [B, C, H, W] (export/PROGRAM.md). The per-element
// maths comes from fastgen/kernels/steps.cuh and philox.cuh, the headers the CUDA kernels compile too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fastgen::kit {

struct Shape4 {
    std::int64_t batch, channels, height, width;
    std::int64_t planes() const { return batch * channels; }
    std::int64_t plane() const { return height * width; }
    std::int64_t count() const { return planes() * plane(); }
};

// Elements first … first + count − 1 of draw `draw` of op `op` under `seed` (the noise contract: element e = normal
// e & 3 of counter e >> 2); a batch row for image i of P elements per image starts at first = i·P.
void draw_normals(std::uint64_t seed, std::uint32_t op, std::uint32_t draw, std::uint64_t first, std::int64_t count, float* out);

// x ← U diag(values) Uᵀ x per plane; basis "fourier" (values [H][W/2+1]) or "dct" (values [H][W]).
void spectral_filter(const std::string& basis, const std::vector<double>& values, const Shape4& shape, float* x);

// UDPM posterior over γ×γ blocks; `out_shape` is x̂'s, e may be null (noiseless).
struct PosteriorConstants {
    int gamma;
    std::vector<float> taps;  // γ×γ, row-major
    float kx, kp, ky, ke, kep;
};
void udpm_posterior(const PosteriorConstants& c, const float* x_l, const float* x_hat, const float* e, const Shape4& out_shape,
                    float* out);

// UDPM posterior for a circulant kernel by Matheron's rule; e (x̂'s shape) and e′ (x_l's) both null or both given.
struct MatheronConstants {
    double alpha, sigma, prior_scale;
    std::vector<double> transfer_re, transfer_im, prior_cov;  // [H][W] on x̂'s grid
};
// The posterior's evidence c_l(g) = α² fold(|ŵ|² ĉ)/γ² + σ² per low-res frequency g [h][w] (a constant of the op).
std::vector<double> matheron_evidence(const MatheronConstants& c, const Shape4& low_shape, const Shape4& out_shape);
void udpm_matheron(const MatheronConstants& c, const float* x_l, const float* x_hat, const float* e, const float* e_prime,
                   const Shape4& low_shape, const Shape4& out_shape, float* out);

struct AffineConstants {
    float a, b, p, q, r, s;
    bool clip;
};
void affine_step(const AffineConstants& c, const float* x, const float* model_out, const float* z, std::int64_t count, float* out);

// One blur step: per stored coefficient k, [c_x, c_eps, c_z] planes of the spectrum's size (H·W′ each).
void blur_step(const std::string& basis, const std::vector<float>& coefficients, const float* x, const float* eps_hat,
               const float* z, const Shape4& shape, float* out);
// The coefficients of one blur step (fg_blur_step_coefficients over the stored spectrum).
std::vector<float> blur_coefficients(const std::vector<double>& log_eigenvalues, double log_alpha, double power,
                                     double log_alpha_cumprod, double power_cumsum);

void upsample(const float* x, const Shape4& in_shape, float* out);
void renoise(const float* x, const float* z, float signal, float noise_scale, std::int64_t count, float* out);

}  // namespace fastgen::kit
