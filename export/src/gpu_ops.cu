#include "gpu_ops.hpp"
#include "gpu_launch.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>

#include "philox.cuh"
#include "row_noise.cuh"
#include "steps.cuh"

namespace fastgen::kit::gpu {
namespace {

constexpr int kMaxTaps = kMaxGamma * kMaxGamma;

// One thread per (row, counter) pair: it writes the lanes of its counter that fall inside its row.
__global__ void normals_kernel(const fg_u64* seeds, const fg_u64* indices, std::int64_t rows, std::int64_t per_image, std::int64_t span,
                               fg_u64 offset, float* out) {
    FASTGEN_GRID_LOOP(pair, rows * span) {
        const std::int64_t row = pair / span, c = pair % span;
        const fg_u64 first = indices[row] * static_cast<fg_u64>(per_image);
        if (c < fg_run_counters(first, per_image)) fg_run_counter(seeds[row], offset, first, per_image, c, out + row * per_image);
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

__global__ void scale_kernel(const float* x, float factor, std::int64_t count, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        out[i] = x[i] * factor;
}

__global__ void fill_kernel(float value, std::int64_t count, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        out[i] = value;
}

// One conversion kernel per element type: `From` → `To` by `convert`.
template <typename From, typename To, typename Convert>
__global__ void convert_kernel(const From* in, std::int64_t count, To* out, Convert convert) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        out[i] = convert(in[i]);
}

template <typename From, typename To, typename Convert>
void convert(const void* in, std::int64_t count, void* out, Convert convert, Stream stream) {
    convert_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(static_cast<const From*>(in), count, static_cast<To*>(out), convert);
}

struct FloatToHalf {
    __device__ __half operator()(float x) const { return __float2half_rn(x); }
};
struct FloatToBfloat16 {
    __device__ __nv_bfloat16 operator()(float x) const { return __float2bfloat16_rn(x); }
};
struct FloatToInt64 {
    __device__ long long operator()(float x) const { return static_cast<long long>(x); }
};
struct FloatToInt32 {
    __device__ int operator()(float x) const { return static_cast<int>(x); }
};
struct HalfToFloat {
    __device__ float operator()(__half x) const { return __half2float(x); }
};
struct Bfloat16ToFloat {
    __device__ float operator()(__nv_bfloat16 x) const { return __bfloat162float(x); }
};

}  // namespace

void draw_normals(const std::uint64_t* seeds, const std::uint64_t* indices, std::int64_t rows, std::int64_t per_image, std::uint32_t op,
                  std::uint32_t draw, float* out, Stream stream) {
    const std::int64_t span = (per_image + 6) / 4;  // the most counters a row touches: ⌈(3 + per_image) / 4⌉
    normals_kernel<<<blocks_for(rows * span), kThreads, 0, as_stream(stream)>>>(reinterpret_cast<const fg_u64*>(seeds),
                                                                                reinterpret_cast<const fg_u64*>(indices), rows, per_image, span,
                                                                                (static_cast<fg_u64>(op) << 32) | draw, out);
}

void scale(const float* x, float factor, std::int64_t count, float* out, Stream stream) {
    scale_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(x, factor, count, out);
}

void fill(float value, std::int64_t count, float* out, Stream stream) {
    fill_kernel<<<blocks_for(count), kThreads, 0, as_stream(stream)>>>(value, count, out);
}

void from_float(const float* in, std::int64_t count, const std::string& dtype, void* out, Stream stream) {
    if (dtype == "float16") return convert<float, __half>(in, count, out, FloatToHalf{}, stream);
    if (dtype == "bfloat16") return convert<float, __nv_bfloat16>(in, count, out, FloatToBfloat16{}, stream);
    if (dtype == "int64") return convert<float, long long>(in, count, out, FloatToInt64{}, stream);
    if (dtype == "int32") return convert<float, int>(in, count, out, FloatToInt32{}, stream);
    throw std::invalid_argument("no device conversion from float32 to " + dtype);
}

void to_float(const void* in, std::int64_t count, const std::string& dtype, float* out, Stream stream) {
    if (dtype == "float16") return convert<__half, float>(in, count, out, HalfToFloat{}, stream);
    if (dtype == "bfloat16") return convert<__nv_bfloat16, float>(in, count, out, Bfloat16ToFloat{}, stream);
    throw std::invalid_argument("no device conversion from " + dtype + " to float32");
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
