// The program's spectral ops (filtered noise, blur steps, udpm_matheron) on CUDA device buffers, in float64 as the
// CPU path computes them (ops.cpp, fft.cpp): FFTs by double-precision cuFFT, the DCT-II by fft.cpp's cosine
// matrices, the pointwise maths by gpu_spectral.cu (steps.cuh). cuFFT is loaded at run time (dlopen of
// libcufft.so.12, as ONNX Runtime is), so the kit has no link-time or load-time dependency on it and CPU-only users
// never need it. Each op only enqueues work on its DeviceCache's stream, to which the cuFFT plans are bound, so a CUDA
// graph captures it once the cache holds its memory and plans (an op's first, eager call makes them).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gpu_ops.hpp"
#include "ops.hpp"

namespace fastgen::kit::gpu {

// Throws Failure(RUNTIME) naming the CUDA call `what` when `status` is an error.
void check_cuda(cudaError_t status, const std::string& what);

// Loads cuFFT now if it is not loaded; throws Failure(RUNTIME) naming libcufft.so.12 and where to get it.
void require_cufft();

// Device memory, uploaded constants and cuFFT plans by key, made on first use and the same on every later use.
// Nothing here may be made during a stream capture: a program's first sample per batch size runs eagerly.
class DeviceCache {
public:
    explicit DeviceCache(Stream stream) : stream_(stream) {}
    ~DeviceCache();
    DeviceCache(const DeviceCache&) = delete;
    DeviceCache& operator=(const DeviceCache&) = delete;

    Stream stream() const { return stream_; }
    // `bytes` bytes of device memory for `key` (one allocation per key and size).
    void* memory(const std::string& key, std::size_t bytes);
    template <typename T>
    T* array(const std::string& key, std::int64_t count) {
        return static_cast<T*>(memory(key, static_cast<std::size_t>(count) * sizeof(T)));
    }
    // `values` in device memory, uploaded the first time `key` is asked for.
    template <typename T>
    const T* constant(const std::string& key, const std::vector<T>& values) {
        return static_cast<const T*>(upload("constant " + key, values.data(), values.size() * sizeof(T)));
    }
    // H×W transforms of `planes` planes, contiguous: real → half spectrum, half spectrum → real, complex ↔ complex.
    enum class Fft { real_forward, real_inverse, complex };
    int plan(Fft kind, int height, int width, std::int64_t planes);  // a cufftHandle bound to stream()

private:
    const void* upload(const std::string& key, const void* data, std::size_t bytes);
    Stream stream_;
    std::map<std::pair<std::string, std::size_t>, void*> memory_;
    std::map<std::tuple<Fft, int, int, std::int64_t>, int> plans_;
};

// As ops.hpp's ops of the same names, on device buffers. `key` names the op's constants in the cache (their values
// are uploaded on its first call only); its scratch memory is shared by every op of the same sizes.
void spectral_filter(DeviceCache& cache, const std::string& key, const std::string& basis, const std::vector<double>& values, const Shape4& shape,
                     float* x);
void blur_step(DeviceCache& cache, const std::string& key, const std::string& basis, const std::vector<float>& coefficients, const float* x,
               const float* eps_hat, const float* z, const Shape4& shape, float* out);
void udpm_matheron(DeviceCache& cache, const std::string& key, const MatheronConstants& c, const float* x_l, const float* x_hat, const float* e,
                   const float* e_prime, const Shape4& low_shape, const Shape4& out_shape, float* out);

}  // namespace fastgen::kit::gpu
