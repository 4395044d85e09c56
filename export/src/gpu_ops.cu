#include "gpu_ops.hpp"

#include <cuda_runtime.h>

#include "philox.cuh"
#include "steps.cuh"

namespace fastgen::kit::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxTaps = 16 * 16;  // γ ≤ 16

unsigned blocks_for(std::int64_t work) { return static_cast<unsigned>((work + kThreads - 1) / kThreads < 65535 ? (work + kThreads - 1) / kThreads : 65535); }
cudaStream_t as_stream(Stream stream) { return static_cast<cudaStream_t>(stream); }

__global__ void normals_kernel(fg_u64 seed, fg_u64 offset, std::int64_t count, float* out) {
    for (std::int64_t g = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; 4 * g < count;
         g += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        float n[4];
        fg_normal4(seed, offset, static_cast<fg_u64>(g), n);
        for (int k = 0; k < 4 && 4 * g + k < count; ++k) out[4 * g + k] = n[k];
    }
}

__global__ void affine_kernel(const float* x, const float* m, const float* z, std::int64_t count, float a, float b, bool clip, float p,
                              float q, float r, float s, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        out[i] = fg_affine_step(x[i], m[i], z != nullptr ? z[i] : 0.0f, a, b, clip, p, q, r, s);
}

struct Taps {
    float values[kMaxTaps];
};

__global__ void posterior_kernel(const float* x_l, const float* x_hat, const float* e, std::int64_t planes, std::int64_t h, std::int64_t w,
                                 int gamma, Taps taps, float kx, float kp, float ky, float ke, float kep, float* out) {
    const std::int64_t blocks = planes * h * w, width = gamma * w;
    float v[kMaxTaps], noise[kMaxTaps], result[kMaxTaps];
    for (std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; b < blocks;
         b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t plane = b / (h * w), i = (b / w) % h, j = b % w;
        const std::int64_t top = plane * gamma * h * width + i * gamma * width + j * gamma;
        for (int a = 0; a < gamma; ++a)
            for (int c = 0; c < gamma; ++c) {
                v[a * gamma + c] = x_hat[top + a * width + c];
                if (e != nullptr) noise[a * gamma + c] = e[top + a * width + c];
            }
        fg_udpm_posterior_block(taps.values, v, e != nullptr ? noise : nullptr, gamma * gamma, x_l[b], kx, kp, ky, ke, kep, result);
        for (int a = 0; a < gamma; ++a)
            for (int c = 0; c < gamma; ++c) out[top + a * width + c] = result[a * gamma + c];
    }
}

__global__ void upsample_kernel(const float* x, std::int64_t planes, std::int64_t height, std::int64_t width, float* out) {
    const std::int64_t count = planes * 4 * height * width;
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t plane = i / (4 * height * width), oy = (i / (2 * width)) % (2 * height), ox = i % (2 * width);
        const fg_upsample_taps rows = fg_upsample_axis(static_cast<fg_u32>(height), static_cast<fg_u32>(oy));
        const fg_upsample_taps cols = fg_upsample_axis(static_cast<fg_u32>(width), static_cast<fg_u32>(ox));
        const float* in = x + plane * height * width;
        out[i] = fg_upsample_pixel(rows, cols, in[rows.i0 * width + cols.i0], in[rows.i0 * width + cols.i1], in[rows.i1 * width + cols.i0],
                                   in[rows.i1 * width + cols.i1]);
    }
}

__global__ void renoise_kernel(const float* x, const float* z, float signal, float noise_scale, std::int64_t count, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        out[i] = fg_renoise(x[i], z[i], signal, noise_scale);
}

}  // namespace

void draw_normals(std::uint64_t seed, std::uint32_t op, std::uint32_t draw, std::int64_t count, float* out, Stream stream) {
    normals_kernel<<<blocks_for((count + 3) / 4), kThreads, 0, as_stream(stream)>>>(seed, (static_cast<fg_u64>(op) << 32) | draw, count, out);
}

void affine_step(const float* x, const float* model_out, const float* z, std::int64_t count, float a, float b, bool clip, float p,
                 float q, float r, float s, float* out, Stream stream) {
    affine_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(x, model_out, z, count, a, b, clip, p, q, r, s, out);
}

void udpm_posterior(const float* x_l, const float* x_hat, const float* e, std::int64_t planes, std::int64_t h, std::int64_t w, int gamma,
                    const float* taps, float kx, float kp, float ky, float ke, float kep, float* out, Stream stream) {
    Taps packed{};
    for (int k = 0; k < gamma * gamma && k < kMaxTaps; ++k) packed.values[k] = taps[k];
    posterior_kernel<<<blocks_for(planes * h * w), kThreads, 0, as_stream(stream)>>>(x_l, x_hat, e, planes, h, w, gamma, packed, kx, kp, ky,
                                                                                      ke, kep, out);
}

void upsample(const float* x, std::int64_t planes, std::int64_t height, std::int64_t width, float* out, Stream stream) {
    upsample_kernel<<<blocks_for(planes * 4 * height * width), kThreads, 0, as_stream(stream)>>>(x, planes, height, width, out);
}

void renoise(const float* x, const float* z, float signal, float noise_scale, std::int64_t count, float* out, Stream stream) {
    renoise_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(x, z, signal, noise_scale, count, out);
}

}  // namespace fastgen::kit::gpu
