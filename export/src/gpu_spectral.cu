// The pointwise parts of the program's spectral ops on the device, in float64, between gpu_fft.cpp's cuFFT
// transforms: the same maths as ops.cpp / fft.cpp on the host (steps.cuh for the per-frequency steps, the same
// cosine matrices for the DCT), in the same order of operations, and compiled without FMA contraction
// (cmake/Cuda.cmake: --fmad=false) so that equal inputs give equal float64 results up to the FFTs' own rounding.
#include "gpu_ops.hpp"
#include "gpu_launch.cuh"

#include <cuda_runtime.h>

#include "steps.cuh"

namespace fastgen::kit::gpu {
namespace {

__global__ void widen_kernel(const float* in, std::int64_t count, int parts, double* out) {
    FASTGEN_GRID_LOOP(i, count) {
        out[i * parts] = in[i];
        if (parts == 2) out[i * parts + 1] = 0.0;
    }
}

__global__ void narrow_kernel(const double* in, int parts, double factor, std::int64_t count, float* out) {
    FASTGEN_GRID_LOOP(i, count) out[i] = static_cast<float>(in[i * parts] * factor);
}

// Thread (plane, column c ∈ {0, W/2}, row ky ≤ H − ky) sets the pair X(ky, c), X(H − ky, c) to their Hermitian part.
__global__ void hermitian_kernel(fg_complex* spectra, std::int64_t planes, int height, int width) {
    const int columns = width / 2 + 1, paired_columns = width % 2 == 0 ? 2 : 1, rows = height / 2 + 1;
    FASTGEN_GRID_LOOP(i, planes * paired_columns * rows) {
        const std::int64_t plane = i / (paired_columns * rows);
        const int column = static_cast<int>(i / rows % paired_columns) == 0 ? 0 : width / 2, row = static_cast<int>(i % rows);
        const int partner = row == 0 ? 0 : height - row;
        fg_complex& a = spectra[(plane * height + row) * columns + column];
        fg_complex& b = spectra[(plane * height + partner) * columns + column];
        const fg_complex part = {0.5 * (a.re + b.re), 0.5 * (a.im - b.im)};
        a = part;
        b = {part.re, -part.im};
    }
}

__global__ void filter_kernel(double* spectra, int parts, const double* values, std::int64_t per_plane, double factor, std::int64_t count) {
    FASTGEN_GRID_LOOP(j, count) spectra[j] = spectra[j] * factor * values[(j / parts) % per_plane];
}

// out[row-pass: y][k] = Σ_i M[k][i] in[y][i];  column pass: out[k][x] = Σ_i M[k][i] in[i][x]; M transposed for the inverse.
__global__ void dct_kernel(const double* in, std::int64_t planes, int height, int width, const double* matrix, bool rows, bool transpose,
                           double* out) {
    const int n = rows ? width : height;
    FASTGEN_GRID_LOOP(e, planes * height * width) {
        const std::int64_t plane = e / (static_cast<std::int64_t>(height) * width);
        const int y = static_cast<int>(e / width % height), x = static_cast<int>(e % width), k = rows ? x : y;
        const double* source = in + plane * height * width;
        double sum = 0.0;
        for (int i = 0; i < n; ++i) {
            const double m = transpose ? matrix[static_cast<std::int64_t>(i) * n + k] : matrix[static_cast<std::int64_t>(k) * n + i];
            sum += m * (rows ? source[static_cast<std::int64_t>(y) * width + i] : source[static_cast<std::int64_t>(i) * width + x]);
        }
        out[e] = sum;
    }
}

__global__ void blur_kernel(const double* spectra, int parts, std::int64_t per_plane, std::int64_t count, bool noisy, const float* coefficients,
                            double factor, double* out) {
    const float *cx = coefficients, *ce = cx + per_plane, *cz = ce + per_plane;
    FASTGEN_GRID_LOOP(j, count) {
        const std::int64_t k = (j / parts) % per_plane;
        const float z = noisy ? static_cast<float>(spectra[2 * count + j] * factor) : 0.0f;
        out[j] = fg_blur_combine(cx[k], static_cast<float>(spectra[j] * factor), ce[k], static_cast<float>(spectra[count + j] * factor), cz[k], z);
    }
}

__global__ void matheron_high_kernel(fg_complex* hat, fg_complex* noise, fg_complex* weighted_noise, const fg_complex* transfer,
                                     const double* prior_cov, std::int64_t per_plane, std::int64_t count) {
    FASTGEN_GRID_LOOP(i, count) {
        const std::int64_t k = i % per_plane;
        const fg_matheron_high terms = fg_matheron_high_terms(transfer[k], prior_cov[k], hat[i], noise != nullptr ? &noise[i] : nullptr);
        hat[i] = terms.weighted_mean;
        if (noise != nullptr) noise[i] = terms.prior_noise, weighted_noise[i] = terms.weighted_noise;
    }
}

__global__ void matheron_residual_kernel(fg_complex* low, const fg_complex* noise_prime, const fg_complex* weighted_mean,
                                         const fg_complex* weighted_noise, const double* evidence, std::int64_t planes, int height, int width,
                                         int h, int w, double alpha, double sigma, double prior_scale, double gamma2) {
    FASTGEN_GRID_LOOP(i, planes * h * w) {
        const std::int64_t plane = i / (static_cast<std::int64_t>(h) * w);
        const int gy = static_cast<int>(i / w % h), gx = static_cast<int>(i % w);
        const std::int64_t high = plane * height * width;
        fg_complex mean_fold{0.0, 0.0}, noise_fold{0.0, 0.0};
        for (int y = gy; y < height; y += h)  // the aliases in row-major order, as ops.cpp folds them
            for (int x = gx; x < width; x += w) {
                const std::int64_t f = high + static_cast<std::int64_t>(y) * width + x;
                mean_fold = fg_zadd(mean_fold, weighted_mean[f]);
                if (weighted_noise != nullptr) noise_fold = fg_zadd(noise_fold, weighted_noise[f]);
            }
        low[i] = fg_matheron_residual(low[i], mean_fold, noise_fold, noise_prime != nullptr ? &noise_prime[i] : nullptr,
                                      evidence[i % (static_cast<std::int64_t>(h) * w)], alpha, sigma, prior_scale, gamma2);
    }
}

__global__ void matheron_update_kernel(const fg_complex* prior_noise, const fg_complex* transfer, const double* prior_cov, const fg_complex* residual,
                                       std::int64_t planes, int height, int width, int h, int w, double alpha, fg_complex* out) {
    FASTGEN_GRID_LOOP(i, planes * height * width) {
        const std::int64_t plane = i / (static_cast<std::int64_t>(height) * width), k = i % (static_cast<std::int64_t>(height) * width);
        const int y = static_cast<int>(k / width), x = static_cast<int>(k % width);
        const fg_complex noise = prior_noise != nullptr ? prior_noise[i] : fg_complex{0.0, 0.0};
        out[i] = fg_matheron_update(noise, transfer[k], prior_cov[k], residual[plane * h * w + static_cast<std::int64_t>(y % h) * w + x % w], alpha);
    }
}

__global__ void matheron_output_kernel(const float* x_hat, const fg_complex* correction, std::int64_t count, float prior_scale, double size,
                                       float* out) {
    FASTGEN_GRID_LOOP(i, count) out[i] = fg_matheron_output(prior_scale, x_hat[i], correction[i].re / size);
}

}  // namespace

void widen(const float* in, std::int64_t count, int parts, double* out, Stream stream) {
    widen_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(in, count, parts, out);
}

void narrow(const double* in, int parts, double factor, std::int64_t count, float* out, Stream stream) {
    narrow_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(in, parts, factor, count, out);
}

void make_hermitian(double* spectra, std::int64_t planes, int height, int width, Stream stream) {
    const std::int64_t threads = planes * (width % 2 == 0 ? 2 : 1) * (height / 2 + 1);
    hermitian_kernel<<<blocks_for(threads), kThreads, 0, as_stream(stream)>>>(reinterpret_cast<fg_complex*>(spectra), planes, height, width);
}

void filter_spectra(double* spectra, int parts, const double* values, std::int64_t per_plane, double factor, std::int64_t count, Stream stream) {
    filter_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(spectra, parts, values, per_plane, factor, count);
}

void dct_pass(const double* in, std::int64_t planes, int height, int width, const double* matrix, bool rows, bool transpose, double* out,
              Stream stream) {
    dct_kernel<<<blocks_for(planes * height * width), kThreads, 0, as_stream(stream)>>>(in, planes, height, width, matrix, rows, transpose, out);
}

void blur_combine(const double* spectra, int parts, std::int64_t per_plane, std::int64_t count, bool noisy, const float* coefficients, double factor,
                  double* out, Stream stream) {
    blur_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(spectra, parts, per_plane, count, noisy, coefficients, factor, out);
}

void matheron_high(fg_complex* hat, fg_complex* noise, fg_complex* weighted_noise, const fg_complex* transfer, const double* prior_cov,
                   std::int64_t per_plane, std::int64_t count, Stream stream) {
    matheron_high_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(hat, noise, weighted_noise, transfer, prior_cov, per_plane, count);
}

void matheron_residual(fg_complex* low, const fg_complex* noise_prime, const fg_complex* weighted_mean, const fg_complex* weighted_noise,
                       const double* evidence, std::int64_t planes, int height, int width, int h, int w, double alpha, double sigma,
                       double prior_scale, Stream stream) {
    const double gamma2 = static_cast<double>(height / h) * (width / w);
    matheron_residual_kernel<<<blocks_for(planes * h * w), kThreads, 0, as_stream(stream)>>>(
        low, noise_prime, weighted_mean, weighted_noise, evidence, planes, height, width, h, w, alpha, sigma, prior_scale, gamma2);
}

void matheron_update(const fg_complex* prior_noise, const fg_complex* transfer, const double* prior_cov, const fg_complex* residual,
                     std::int64_t planes, int height, int width, int h, int w, double alpha, fg_complex* out, Stream stream) {
    matheron_update_kernel<<<blocks_for(planes * height * width), kThreads, 0, as_stream(stream)>>>(prior_noise, transfer, prior_cov, residual, planes,
                                                                                                     height, width, h, w, alpha, out);
}

void matheron_output(const float* x_hat, const fg_complex* correction, std::int64_t count, float prior_scale, double size, float* out,
                     Stream stream) {
    matheron_output_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(x_hat, correction, count, prior_scale, size, out);
}

}  // namespace fastgen::kit::gpu
