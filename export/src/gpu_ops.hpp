// The program's elementwise step ops on CUDA device buffers (float32), launched on a stream. The per-element maths
// is steps.cuh / philox.cuh, the headers the CPU path (ops.cpp) compiles: one source for both. Every op reads its
// constants from its arguments or from device memory (the seed), so a CUDA graph can capture it once and replay it.
#pragma once

#include <cstdint>
#include <string>

namespace fastgen::kit::gpu {

using Stream = void*;  // cudaStream_t
inline constexpr int kMaxGamma = 16;  // udpm_posterior's largest block side

// The program's noise contract (ops.hpp's draw_normals); `seed` is one device word, so replays draw for a new seed.
void draw_normals(const std::uint64_t* seed, std::uint32_t op, std::uint32_t draw, std::int64_t count, float* out, Stream stream);
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

}  // namespace fastgen::kit::gpu
