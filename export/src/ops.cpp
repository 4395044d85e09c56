#include "ops.hpp"

#include <philox.cuh>
#include <steps.cuh>

#include "row_noise.cuh"

#include <cmath>

#include "error.hpp"
#include "fft.hpp"

namespace fastgen::kit {
namespace {

std::int64_t spectrum_columns(const std::string& basis, std::int64_t width) { return basis == "fourier" ? width / 2 + 1 : width; }

}  // namespace

void draw_normals(std::uint64_t seed, std::uint32_t op, std::uint32_t draw, std::uint64_t first, std::int64_t count, float* out) {
    const fg_u64 offset = (static_cast<fg_u64>(op) << 32) | draw;
    for (long long c = 0; c < fg_run_counters(first, count); ++c) fg_run_counter(seed, offset, first, count, c, out);
}

void spectral_filter(const std::string& basis, const std::vector<double>& values, const Shape4& shape, float* x) {
    const int height = static_cast<int>(shape.height), width = static_cast<int>(shape.width);
    std::vector<double> plane(shape.plane());
    if (basis == "fourier") {
        std::vector<complex> spectrum(static_cast<std::size_t>(height) * (width / 2 + 1));
        for (std::int64_t p = 0; p < shape.planes(); ++p) {
            float* data = x + p * shape.plane();
            plane.assign(data, data + shape.plane());
            rfft2_ortho(plane.data(), height, width, spectrum.data());
            for (std::size_t k = 0; k < spectrum.size(); ++k) spectrum[k] *= values[k];
            irfft2_ortho(spectrum.data(), height, width, plane.data());
            for (std::int64_t i = 0; i < shape.plane(); ++i) data[i] = static_cast<float>(plane[i]);
        }
        return;
    }
    std::vector<double> coefficients(shape.plane());
    for (std::int64_t p = 0; p < shape.planes(); ++p) {
        float* data = x + p * shape.plane();
        plane.assign(data, data + shape.plane());
        dct2_ortho(plane.data(), height, width, coefficients.data());
        for (std::size_t k = 0; k < coefficients.size(); ++k) coefficients[k] *= values[k];
        idct2_ortho(coefficients.data(), height, width, plane.data());
        for (std::int64_t i = 0; i < shape.plane(); ++i) data[i] = static_cast<float>(plane[i]);
    }
}

void udpm_posterior(const PosteriorConstants& c, const float* x_l, const float* x_hat, const float* e, const Shape4& out_shape,
                    float* out) {
    const int gamma = c.gamma, block = gamma * gamma;
    const std::int64_t h = out_shape.height / gamma, w = out_shape.width / gamma;
    std::vector<float> v(block), noise(block), result(block);
    for (std::int64_t p = 0; p < out_shape.planes(); ++p) {
        const std::int64_t high = p * out_shape.plane(), low = p * h * w;
        for (std::int64_t i = 0; i < h; ++i)
            for (std::int64_t j = 0; j < w; ++j) {
                auto at = [&](int a, int b) { return high + (i * gamma + a) * out_shape.width + j * gamma + b; };
                for (int a = 0; a < gamma; ++a)
                    for (int b = 0; b < gamma; ++b) {
                        v[a * gamma + b] = x_hat[at(a, b)];
                        if (e != nullptr) noise[a * gamma + b] = e[at(a, b)];
                    }
                fg_udpm_posterior_block(c.taps.data(), v.data(), e != nullptr ? noise.data() : nullptr, block, x_l[low + i * w + j],
                                        c.kx, c.kp, c.ky, c.ke, c.kep, result.data());
                for (int a = 0; a < gamma; ++a)
                    for (int b = 0; b < gamma; ++b) out[at(a, b)] = result[a * gamma + b];
            }
    }
}

std::vector<double> matheron_evidence(const MatheronConstants& c, const Shape4& low_shape, const Shape4& out_shape) {
    const std::int64_t height = out_shape.height, width = out_shape.width, h = low_shape.height, w = low_shape.width;
    const double gamma2 = static_cast<double>(height / h) * (width / w);
    std::vector<double> folded(static_cast<std::size_t>(h * w), 0.0);  // fold(|ŵ|² ĉ), in row-major order of f
    for (std::int64_t y = 0; y < height; ++y)
        for (std::int64_t x = 0; x < width; ++x) {
            const std::size_t k = static_cast<std::size_t>(y * width + x);
            folded[static_cast<std::size_t>((y % h) * w + x % w)] += (c.transfer_re[k] * c.transfer_re[k] + c.transfer_im[k] * c.transfer_im[k]) * c.prior_cov[k];
        }
    for (double& value : folded) value = fg_matheron_evidence(value, c.alpha, c.sigma, gamma2);
    return folded;
}

void udpm_matheron(const MatheronConstants& c, const float* x_l, const float* x_hat, const float* e, const float* e_prime,
                   const Shape4& low_shape, const Shape4& out_shape, float* out) {
    const int height = static_cast<int>(out_shape.height), width = static_cast<int>(out_shape.width);
    const int h = static_cast<int>(low_shape.height), w = static_cast<int>(low_shape.width);
    const double gamma2 = static_cast<double>(height / h) * (width / w);
    const std::size_t high_size = static_cast<std::size_t>(height) * width, low_size = static_cast<std::size_t>(h) * w;
    const std::vector<double> evidence = matheron_evidence(c, low_shape, out_shape);
    auto as_pair = [](const complex& value) { return fg_complex{value.real(), value.imag()}; };
    // fold(S)[g] = Σ over the aliases f = (g_y + a·h, g_x + b·w) of g, in row-major order of f.
    auto fold = [&](const std::vector<fg_complex>& high) {
        std::vector<fg_complex> low(low_size, fg_complex{0.0, 0.0});
        for (int y = 0; y < height; ++y)
            for (int x = 0; x < width; ++x) {
                fg_complex& sum = low[static_cast<std::size_t>(y % h) * w + x % w];
                sum = fg_zadd(sum, high[static_cast<std::size_t>(y) * width + x]);
            }
        return low;
    };

    std::vector<complex> work(high_size), noise(high_size), low_work(low_size), low_noise(low_size);
    std::vector<fg_complex> prior_noise(high_size), weighted_noise(high_size), weighted_mean(high_size), residual(low_size);
    for (std::int64_t p = 0; p < out_shape.planes(); ++p) {
        const float* hat = x_hat + p * out_shape.plane();
        const float* low = x_l + p * low_shape.plane();
        for (std::size_t k = 0; k < high_size; ++k) work[k] = hat[k];
        fft2(work.data(), height, width, false, work.data());
        for (std::size_t k = 0; k < low_size; ++k) low_work[k] = low[k];
        fft2(low_work.data(), h, w, false, low_work.data());
        if (e != nullptr) {
            for (std::size_t k = 0; k < high_size; ++k) noise[k] = e[p * out_shape.plane() + k];
            fft2(noise.data(), height, width, false, noise.data());
            for (std::size_t k = 0; k < low_size; ++k) low_noise[k] = e_prime[p * low_shape.plane() + k];
            fft2(low_noise.data(), h, w, false, low_noise.data());
        }
        for (std::size_t k = 0; k < high_size; ++k) {
            const fg_complex noise_k = as_pair(noise[k]);
            const fg_matheron_high terms = fg_matheron_high_terms({c.transfer_re[k], c.transfer_im[k]}, c.prior_cov[k], as_pair(work[k]),
                                                                  e != nullptr ? &noise_k : nullptr);
            prior_noise[k] = terms.prior_noise, weighted_noise[k] = terms.weighted_noise, weighted_mean[k] = terms.weighted_mean;
        }
        const std::vector<fg_complex> mean_fold = fold(weighted_mean), noise_fold = fold(weighted_noise);
        for (std::size_t k = 0; k < low_size; ++k) {
            const fg_complex noise_prime = as_pair(low_noise[k]);
            residual[k] = fg_matheron_residual(as_pair(low_work[k]), mean_fold[k], noise_fold[k], e != nullptr ? &noise_prime : nullptr,
                                               evidence[k], c.alpha, c.sigma, c.prior_scale, gamma2);
        }
        for (int y = 0; y < height; ++y)
            for (int x = 0; x < width; ++x) {
                const std::size_t k = static_cast<std::size_t>(y) * width + x;
                const fg_complex update = fg_matheron_update(prior_noise[k], {c.transfer_re[k], c.transfer_im[k]}, c.prior_cov[k],
                                                             residual[static_cast<std::size_t>(y % h) * w + x % w], c.alpha);
                work[k] = complex(update.re, update.im);
            }
        fft2(work.data(), height, width, true, work.data());
        float* result = out + p * out_shape.plane();
        const float scale = static_cast<float>(c.prior_scale);
        for (std::size_t k = 0; k < high_size; ++k) result[k] = fg_matheron_output(scale, hat[k], work[k].real());
    }
}

void affine_step(const AffineConstants& c, const float* x, const float* model_out, const float* z, std::int64_t count, float* out) {
    for (std::int64_t i = 0; i < count; ++i)
        out[i] = fg_affine_step(x[i], model_out[i], z != nullptr ? z[i] : 0.0f, c.a, c.b, c.clip, c.p, c.q, c.r, c.s);
}

std::vector<float> blur_coefficients(const std::vector<double>& log_eigenvalues, double log_alpha, double power,
                                     double log_alpha_cumprod, double power_cumsum) {
    const std::size_t n = log_eigenvalues.size();
    std::vector<float> coefficients(3 * n);
    for (std::size_t k = 0; k < n; ++k) {
        const fg_blur_coefficients c = fg_blur_step_coefficients(log_alpha, power, log_alpha_cumprod, power_cumsum, log_eigenvalues[k]);
        coefficients[k] = c.x;
        coefficients[n + k] = c.eps;
        coefficients[2 * n + k] = c.z;
    }
    return coefficients;
}

void blur_step(const std::string& basis, const std::vector<float>& coefficients, const float* x, const float* eps_hat, const float* z,
               const Shape4& shape, float* out) {
    const int height = static_cast<int>(shape.height), width = static_cast<int>(shape.width);
    const std::size_t n = static_cast<std::size_t>(height) * spectrum_columns(basis, width);
    const float *cx = coefficients.data(), *ce = cx + n, *cz = ce + n;
    std::vector<double> plane(shape.plane());
    auto load = [&](const float* data) { plane.assign(data, data + shape.plane()); };
    auto store = [&](float* data) {
        for (std::int64_t i = 0; i < shape.plane(); ++i) data[i] = static_cast<float>(plane[i]);
    };
    if (basis == "fourier") {
        std::vector<complex> xs(n), es(n), zs(n, complex(0.0, 0.0));
        for (std::int64_t p = 0; p < shape.planes(); ++p) {
            const std::int64_t offset = p * shape.plane();
            load(x + offset), rfft2_ortho(plane.data(), height, width, xs.data());
            load(eps_hat + offset), rfft2_ortho(plane.data(), height, width, es.data());
            if (z != nullptr) load(z + offset), rfft2_ortho(plane.data(), height, width, zs.data());
            for (std::size_t k = 0; k < n; ++k) {
                const float re = fg_blur_combine(cx[k], static_cast<float>(xs[k].real()), ce[k], static_cast<float>(es[k].real()), cz[k],
                                                 static_cast<float>(zs[k].real()));
                const float im = fg_blur_combine(cx[k], static_cast<float>(xs[k].imag()), ce[k], static_cast<float>(es[k].imag()), cz[k],
                                                 static_cast<float>(zs[k].imag()));
                xs[k] = complex(re, im);
            }
            irfft2_ortho(xs.data(), height, width, plane.data());
            store(out + offset);
        }
        return;
    }
    std::vector<double> xs(n), es(n), zs(n, 0.0);
    for (std::int64_t p = 0; p < shape.planes(); ++p) {
        const std::int64_t offset = p * shape.plane();
        load(x + offset), dct2_ortho(plane.data(), height, width, xs.data());
        load(eps_hat + offset), dct2_ortho(plane.data(), height, width, es.data());
        if (z != nullptr) load(z + offset), dct2_ortho(plane.data(), height, width, zs.data());
        for (std::size_t k = 0; k < n; ++k)
            xs[k] = fg_blur_combine(cx[k], static_cast<float>(xs[k]), ce[k], static_cast<float>(es[k]), cz[k], static_cast<float>(zs[k]));
        idct2_ortho(xs.data(), height, width, plane.data());
        store(out + offset);
    }
}

void upsample(const float* x, const Shape4& in_shape, float* out) {
    const std::int64_t height = in_shape.height, width = in_shape.width;
    for (std::int64_t p = 0; p < in_shape.planes(); ++p) {
        const float* in = x + p * in_shape.plane();
        float* plane = out + p * 4 * in_shape.plane();
        for (std::int64_t oy = 0; oy < 2 * height; ++oy) {
            const fg_upsample_taps rows = fg_upsample_axis(static_cast<fg_u32>(height), static_cast<fg_u32>(oy));
            for (std::int64_t ox = 0; ox < 2 * width; ++ox) {
                const fg_upsample_taps cols = fg_upsample_axis(static_cast<fg_u32>(width), static_cast<fg_u32>(ox));
                plane[oy * 2 * width + ox] = fg_upsample_pixel(rows, cols, in[rows.i0 * width + cols.i0], in[rows.i0 * width + cols.i1],
                                                               in[rows.i1 * width + cols.i0], in[rows.i1 * width + cols.i1]);
            }
        }
    }
}

void renoise(const float* x, const float* z, float signal, float noise_scale, std::int64_t count, float* out) {
    for (std::int64_t i = 0; i < count; ++i) out[i] = fg_renoise(x[i], z[i], signal, noise_scale);
}

}  // namespace fastgen::kit
