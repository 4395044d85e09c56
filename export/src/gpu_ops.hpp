// The program's elementwise step ops on CUDA device buffers (float32), launched on a stream. The per-element maths
// is steps.cuh / philox.cuh, the headers the CPU path (ops.cpp) compiles: one source for both. Every op reads its
// constants from its arguments or from device memory (the seed), so a CUDA graph can capture it once and replay it.
#pragma once

#include <cstdint>
#include <string>

struct fg_complex;  // steps.cuh: (re, im) in float64, the layout of cufftDoubleComplex

namespace fastgen::kit::gpu {

using Stream = void*;  // cudaStream_t
inline constexpr int kMaxGamma = 16;  // udpm_posterior's largest block side

// The program's noise contract over a batch of rows (ops.hpp's draw_normals per row): row r's `per_image` elements
// are elements indices[r]·per_image … of the draw under seeds[r]. `seeds` and `indices` are device arrays of `rows`
// words, so a replayed graph draws for the rows copied in since.
void draw_normals(const std::uint64_t* seeds, const std::uint64_t* indices, std::int64_t rows, std::int64_t per_image, std::uint32_t op,
                  std::uint32_t draw, float* out, Stream stream);
void scale(const float* x, float factor, std::int64_t count, float* out, Stream stream);
void fill(float value, std::int64_t count, float* out, Stream stream);
// float32 ↔ a site's tensor type ("float16", "bfloat16", "int64", "int32"), as the host path converts (onnxruntime.cpp):
// ints truncate toward zero, halves round to nearest even.
void from_float(const float* in, std::int64_t count, const std::string& dtype, void* out, Stream stream);
void to_float(const void* in, std::int64_t count, const std::string& dtype, float* out, Stream stream);
void affine_step(const float* x, const float* model_out, const float* z, std::int64_t count, float a, float b, bool clip, float p,
                 float q, float r, float s, float* out, Stream stream);
void udpm_posterior(const float* x_l, const float* x_hat, const float* e, std::int64_t planes, std::int64_t h, std::int64_t w, int gamma,
                    const float* taps, float kx, float kp, float ky, float ke, float kep, float* out, Stream stream);
void upsample(const float* x, std::int64_t planes, std::int64_t height, std::int64_t width, float* out, Stream stream);
void renoise(const float* x, const float* z, float signal, float noise_scale, std::int64_t count, float* out, Stream stream);


// The pointwise parts of the spectral ops (gpu_spectral.cu), in float64 between gpu_fft.cpp's transforms. Spectra
// are arrays of `parts` doubles per value (2: complex, 1: real DCT coefficients); `count` counts doubles.
// in → out[i·parts] (and a zero imaginary part when parts is 2).
void widen(const float* in, std::int64_t count, int parts, double* out, Stream stream);
// out[i] = float(in[i·parts] · factor).
void narrow(const double* in, int parts, double factor, std::int64_t count, float* out, Stream stream);
// Half spectra [planes][H][W/2+1] as torch.fft.irfft2 (and fft.cpp) read them: in the columns 0 and W/2 (W even),
// which hold both X(ky) and X(H − ky), each pair becomes its Hermitian part ((X(ky) + conj X(H − ky))/2 and its
// conjugate): exactly the imaginary parts irfft2 drops after its column transform, so cuFFT's C2R gets a spectrum a
// real plane has.
void make_hermitian(double* spectra, std::int64_t planes, int height, int width, Stream stream);
// spectra[j] ← spectra[j] · factor · values[value j's index within its plane of `per_plane` values].
void filter_spectra(double* spectra, int parts, const double* values, std::int64_t per_plane, double factor, std::int64_t count, Stream stream);
// One pass of fft.cpp's DCT-II by its n×n cosine matrix (n = width for rows, height for columns), transposed for the inverse.
void dct_pass(const double* in, std::int64_t planes, int height, int width, const double* matrix, bool rows, bool transpose, double* out,
              Stream stream);
// The blur step's combination (fg_blur_combine) of the spectra [x̄ | ε̄ | z̄] (z̄ only when noisy), each `count` doubles,
// each scaled by `factor` and rounded to float32 first as ops.cpp does; coefficients [c_x | c_eps | c_z] per value.
void blur_combine(const double* spectra, int parts, std::int64_t per_plane, std::int64_t count, bool noisy, const float* coefficients, double factor,
                  double* out, Stream stream);
// udpm_matheron's steps (steps.cuh) over F(x̂) [planes][H][W], F(e) (null: not noisy), F(x_l) [planes][h][w], F(e′):
// hat ← ŵ F(x̂); noise ← E = √ĉ F(e), weighted_noise ← ŵ E (when noise is given).
void matheron_high(fg_complex* hat, fg_complex* noise, fg_complex* weighted_noise, const fg_complex* transfer, const double* prior_cov,
                   std::int64_t per_plane, std::int64_t count, Stream stream);
// low ← R, from the alias folds of weighted_mean (ŵ F(x̂)) and weighted_noise (null: not noisy).
void matheron_residual(fg_complex* low, const fg_complex* noise_prime, const fg_complex* weighted_mean, const fg_complex* weighted_noise,
                       const double* evidence, std::int64_t planes, int height, int width, int h, int w, double alpha, double sigma,
                       double prior_scale, Stream stream);
// out ← E + α ĉ conj(ŵ) R(g) (prior_noise null: E = 0).
void matheron_update(const fg_complex* prior_noise, const fg_complex* transfer, const double* prior_cov, const fg_complex* residual,
                     std::int64_t planes, int height, int width, int h, int w, double alpha, fg_complex* out, Stream stream);
// out = ᾱ x̂ + Re(correction)/size, correction = the unnormalised inverse DFT of the update.
void matheron_output(const float* x_hat, const fg_complex* correction, std::int64_t count, float prior_scale, double size, float* out,
                     Stream stream);

}  // namespace fastgen::kit::gpu
