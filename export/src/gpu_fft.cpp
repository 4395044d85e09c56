#include "gpu_fft.hpp"

#include <cufft.h>
#include <dlfcn.h>

#include <cmath>
#include <type_traits>

#include "error.hpp"
#include "fft.hpp"
#include "onnxruntime.hpp"
#include "steps.cuh"

namespace fastgen::kit::gpu {
namespace {

constexpr const char* kCufftLibrary = "libcufft.so.12";  // CUDA 13's cuFFT (the headers the kit compiles against)

// The cuFFT functions the kit calls, from the library loaded at run time.
struct Cufft {
    decltype(&cufftPlanMany) plan_many;
    decltype(&cufftSetStream) set_stream;
    decltype(&cufftExecD2Z) exec_d2z;
    decltype(&cufftExecZ2D) exec_z2d;
    decltype(&cufftExecZ2Z) exec_z2z;
    decltype(&cufftDestroy) destroy;
};

// $FASTGEN_CUFFT_LIBRARY if set, else libcufft.so.12 beside the kit's library (the build links the one CMake found
// there), else the system's search path.
Cufft load_cufft() {
    std::string loaded, errors;
    void* handle = open_first_library(library_candidates("FASTGEN_CUFFT_LIBRARY", {kCufftLibrary}), loaded, errors);
    if (handle == nullptr)
        fail(FASTGEN_ERROR_RUNTIME, std::string("the GPU path's FFT ops (filtered noise, blur steps, the general-kernel UDPM posterior) need cuFFT, "
                                                "and ") + kCufftLibrary + " cannot be loaded (" + errors + "); pip install nvidia-cufft "
                                                "(CUDA 13's cuFFT, nvidia/cu13/lib) or install a CUDA 13 toolkit, and set FASTGEN_CUFFT_LIBRARY "
                                                "to its " + kCufftLibrary + " (or rebuild the kit, which links the one it finds); or use provider cpu");
    auto symbol = [handle](auto& function, const char* name) {
        function = reinterpret_cast<std::remove_reference_t<decltype(function)>>(dlsym(handle, name));
        if (function == nullptr) fail(FASTGEN_ERROR_RUNTIME, std::string("the loaded cuFFT has no ") + name + "; it is not " + kCufftLibrary);
    };
    Cufft api{};
    symbol(api.plan_many, "cufftPlanMany");
    symbol(api.set_stream, "cufftSetStream");
    symbol(api.exec_d2z, "cufftExecD2Z");
    symbol(api.exec_z2d, "cufftExecZ2D");
    symbol(api.exec_z2z, "cufftExecZ2Z");
    symbol(api.destroy, "cufftDestroy");
    return api;
}

const Cufft& cufft() {
    static const Cufft api = load_cufft();  // a failed load throws and is tried again on the next call
    return api;
}

void check_cufft(cufftResult status, const std::string& what) {
    if (status != CUFFT_SUCCESS) fail(FASTGEN_ERROR_RUNTIME, "cuFFT " + what + " failed (cufftResult " + std::to_string(static_cast<int>(status)) + ")");
}

cudaStream_t as_stream(Stream stream) { return static_cast<cudaStream_t>(stream); }
cufftDoubleComplex* as_complex(double* data) { return reinterpret_cast<cufftDoubleComplex*>(data); }
cufftDoubleComplex* as_complex(fg_complex* data) { return reinterpret_cast<cufftDoubleComplex*>(data); }

// 1/√(H·W): the orthonormal transforms' scale, as fft.cpp applies it after each unnormalised transform.
double ortho_factor(int height, int width) { return 1.0 / std::sqrt(static_cast<double>(height) * width); }

// out = the 2-D DCT-II (or, transposed, its inverse) of `planes` H×W planes: rows, then columns, as fft.cpp.
void dct(DeviceCache& cache, const double* in, std::int64_t planes, int height, int width, bool inverse, double* scratch, double* out) {
    const double* rows = cache.constant("dct matrix " + std::to_string(width), dct_matrix(width));
    const double* columns = cache.constant("dct matrix " + std::to_string(height), dct_matrix(height));
    dct_pass(in, planes, height, width, rows, true, inverse, scratch, cache.stream());
    dct_pass(scratch, planes, height, width, columns, false, inverse, out, cache.stream());
}

}  // namespace

void check_cuda(cudaError_t status, const std::string& what) {
    if (status != cudaSuccess) fail(FASTGEN_ERROR_RUNTIME, "CUDA " + what + " failed: " + cudaGetErrorString(status));
}

void require_cufft() { cufft(); }

DeviceCache::~DeviceCache() {
    for (const auto& entry : plans_) cufft().destroy(entry.second);
    for (const auto& entry : memory_) cudaFree(entry.second);
}

void* DeviceCache::memory(const std::string& key, std::size_t bytes) {
    void*& data = memory_[{key, bytes}];
    if (data == nullptr) check_cuda(cudaMalloc(&data, bytes), "cudaMalloc of " + std::to_string(bytes) + " bytes");
    return data;
}

const void* DeviceCache::upload(const std::string& key, const void* data, std::size_t bytes) {
    const bool fresh = memory_.count({key, bytes}) == 0;
    void* device = memory(key, bytes);
    if (fresh) check_cuda(cudaMemcpy(device, data, bytes, cudaMemcpyHostToDevice), "upload of " + key);
    return device;
}

int DeviceCache::plan(Fft kind, int height, int width, std::int64_t planes) {
    const auto key = std::make_tuple(kind, height, width, planes);
    if (const auto found = plans_.find(key); found != plans_.end()) return found->second;
    int n[2] = {height, width};
    const cufftType type = kind == Fft::real_forward ? CUFFT_D2Z : kind == Fft::real_inverse ? CUFFT_Z2D : CUFFT_Z2Z;
    cufftHandle handle = 0;
    check_cufft(cufft().plan_many(&handle, 2, n, nullptr, 1, 0, nullptr, 1, 0, type, static_cast<int>(planes)),
                "plan of " + std::to_string(planes) + " " + std::to_string(height) + "×" + std::to_string(width) + " transforms");
    plans_[key] = handle;
    check_cufft(cufft().set_stream(handle, as_stream(stream_)), "cufftSetStream");
    return handle;
}

void spectral_filter(DeviceCache& cache, const std::string& key, const std::string& basis, const std::vector<double>& values, const Shape4& shape,
                     float* x) {
    const int height = static_cast<int>(shape.height), width = static_cast<int>(shape.width);
    const std::int64_t planes = shape.planes(), count = shape.count();
    const double* filter = cache.constant(key + " filter", values);
    const Stream stream = cache.stream();
    if (basis == "fourier") {
        const std::int64_t per_plane = static_cast<std::int64_t>(height) * (width / 2 + 1);
        double* plane = cache.array<double>("fft real", count);
        double* spectrum = cache.array<double>("fft spectra", 2 * planes * per_plane);
        widen(x, count, 1, plane, stream);
        check_cufft(cufft().exec_d2z(cache.plan(DeviceCache::Fft::real_forward, height, width, planes), plane, as_complex(spectrum)), "cufftExecD2Z");
        filter_spectra(spectrum, 2, filter, per_plane, ortho_factor(height, width), 2 * planes * per_plane, stream);
        make_hermitian(spectrum, planes, height, width, stream);
        check_cufft(cufft().exec_z2d(cache.plan(DeviceCache::Fft::real_inverse, height, width, planes), as_complex(spectrum), plane), "cufftExecZ2D");
        narrow(plane, 1, ortho_factor(height, width), count, x, stream);
        return;
    }
    double* coefficients = cache.array<double>("dct coefficients", count);
    double* scratch = cache.array<double>("dct scratch", count);
    widen(x, count, 1, coefficients, stream);
    dct(cache, coefficients, planes, height, width, false, scratch, coefficients);
    filter_spectra(coefficients, 1, filter, shape.plane(), 1.0, count, stream);
    dct(cache, coefficients, planes, height, width, true, scratch, coefficients);
    narrow(coefficients, 1, 1.0, count, x, stream);
}

void blur_step(DeviceCache& cache, const std::string& key, const std::string& basis, const std::vector<float>& coefficients, const float* x,
               const float* eps_hat, const float* z, const Shape4& shape, float* out) {
    const int height = static_cast<int>(shape.height), width = static_cast<int>(shape.width);
    const std::int64_t planes = shape.planes(), count = shape.count(), terms = z != nullptr ? 3 : 2;
    const float* step = cache.constant(key + " coefficients", coefficients);
    const Stream stream = cache.stream();
    const bool fourier = basis == "fourier";
    // The terms' planes back to back: [x | ε̂ | z], transformed together.
    double* planes_in = cache.array<double>(fourier ? "fft real" : "dct coefficients", terms * count);
    const float* inputs[3] = {x, eps_hat, z};
    for (std::int64_t term = 0; term < terms; ++term) widen(inputs[term], count, 1, planes_in + term * count, stream);
    if (fourier) {
        const std::int64_t per_plane = static_cast<std::int64_t>(height) * (width / 2 + 1), spectrum = 2 * planes * per_plane;
        double* spectra = cache.array<double>("fft spectra", terms * spectrum);
        double* combined = cache.array<double>("fft combined", spectrum);
        check_cufft(cufft().exec_d2z(cache.plan(DeviceCache::Fft::real_forward, height, width, terms * planes), planes_in, as_complex(spectra)),
                    "cufftExecD2Z");
        blur_combine(spectra, 2, per_plane, spectrum, z != nullptr, step, ortho_factor(height, width), combined, stream);
        make_hermitian(combined, planes, height, width, stream);
        check_cufft(cufft().exec_z2d(cache.plan(DeviceCache::Fft::real_inverse, height, width, planes), as_complex(combined), planes_in),
                    "cufftExecZ2D");
        narrow(planes_in, 1, ortho_factor(height, width), count, out, stream);
        return;
    }
    double* scratch = cache.array<double>("dct scratch", terms * count);
    dct(cache, planes_in, terms * planes, height, width, false, scratch, planes_in);
    blur_combine(planes_in, 1, shape.plane(), count, z != nullptr, step, 1.0, scratch, stream);
    dct(cache, scratch, planes, height, width, true, planes_in, scratch);
    narrow(scratch, 1, 1.0, count, out, stream);
}

void udpm_matheron(DeviceCache& cache, const std::string& key, const MatheronConstants& c, const float* x_l, const float* x_hat, const float* e,
                   const float* e_prime, const Shape4& low_shape, const Shape4& out_shape, float* out) {
    const int height = static_cast<int>(out_shape.height), width = static_cast<int>(out_shape.width);
    const int h = static_cast<int>(low_shape.height), w = static_cast<int>(low_shape.width);
    const std::int64_t planes = out_shape.planes(), high_count = out_shape.count(), low_count = low_shape.count(), terms = e != nullptr ? 2 : 1;
    std::vector<double> transfer_values(2 * c.transfer_re.size());
    for (std::size_t k = 0; k < c.transfer_re.size(); ++k) transfer_values[2 * k] = c.transfer_re[k], transfer_values[2 * k + 1] = c.transfer_im[k];
    const auto* transfer = reinterpret_cast<const fg_complex*>(cache.constant(key + " transfer", transfer_values));
    const double* prior_cov = cache.constant(key + " prior covariance", c.prior_cov);
    const double* evidence = cache.constant(key + " evidence", matheron_evidence(c, low_shape, out_shape));
    const Stream stream = cache.stream();
    // [F(x̂) | F(e)] and [F(x_l) | F(e′)], each pair transformed together.
    auto* high = cache.array<fg_complex>("matheron high", terms * high_count);
    auto* low = cache.array<fg_complex>("matheron low", terms * low_count);
    widen(x_hat, high_count, 2, reinterpret_cast<double*>(high), stream);
    widen(x_l, low_count, 2, reinterpret_cast<double*>(low), stream);
    fg_complex *noise = nullptr, *noise_prime = nullptr, *weighted_noise = nullptr;
    if (e != nullptr) {
        noise = high + high_count, noise_prime = low + low_count;
        weighted_noise = cache.array<fg_complex>("matheron weighted noise", high_count);
        widen(e, high_count, 2, reinterpret_cast<double*>(noise), stream);
        widen(e_prime, low_count, 2, reinterpret_cast<double*>(noise_prime), stream);
    }
    check_cufft(cufft().exec_z2z(cache.plan(DeviceCache::Fft::complex, height, width, terms * planes), as_complex(high), as_complex(high), CUFFT_FORWARD),
                "cufftExecZ2Z");
    check_cufft(cufft().exec_z2z(cache.plan(DeviceCache::Fft::complex, h, w, terms * planes), as_complex(low), as_complex(low), CUFFT_FORWARD),
                "cufftExecZ2Z");
    matheron_high(high, noise, weighted_noise, transfer, prior_cov, out_shape.plane(), high_count, stream);
    matheron_residual(low, noise_prime, high, weighted_noise, evidence, planes, height, width, h, w, c.alpha, c.sigma, c.prior_scale, stream);
    matheron_update(noise, transfer, prior_cov, low, planes, height, width, h, w, c.alpha, high, stream);
    check_cufft(cufft().exec_z2z(cache.plan(DeviceCache::Fft::complex, height, width, planes), as_complex(high), as_complex(high), CUFFT_INVERSE),
                "cufftExecZ2Z");
    matheron_output(x_hat, high, high_count, static_cast<float>(c.prior_scale), static_cast<double>(height) * width, out, stream);
}

}  // namespace fastgen::kit::gpu
