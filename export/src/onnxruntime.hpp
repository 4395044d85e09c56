// Network call sites through ONNX Runtime's C++ API. The library is loaded at run time (dlopen + OrtGetApiBase,
// ORT_API_MANUAL_INIT), so any ONNX Runtime at least as new as the headers works, e.g. the pip wheel's.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "manifest.hpp"

struct OrtMemoryInfo;  // ONNX Runtime's C type (onnxruntime_c_api.h)

namespace fastgen::kit {

// Execution providers selectable by name at run time.
enum class Provider { cpu, cuda, tensorrt, nv_tensorrt_rtx };
Provider provider_from_name(const std::string& name);  // throws Failure(ARGUMENT) naming the choices
bool provider_is_gpu(Provider provider);
std::string provider_name(Provider provider);

struct RuntimeOptions {
    Provider provider = Provider::cpu;
    int threads = 0;  // intra-op threads on the CPU; 0 = ONNX Runtime's default
    int device = 0;
    std::string library;  // libonnxruntime to load ("" = the default search, see onnxruntime.cpp)
};

// One opened graph of the bundle. `run` takes its inputs as float32 host buffers in the site's input order and
// converts them to the graph's input types (timesteps to int64 …), as fastgen.runtime.BundleSite does; a GPU
// provider copies them to the device and back. The TensorRT providers run a site's `.plan` engine of their flavour
// where the bundle has one (an EPContext model, see onnxruntime.cpp). `run_device` binds CUDA device buffers already in the graph's
// types through IO binding (OrtMemoryInfo "Cuda"), so nothing passes through the host (the GPU interpreter's way).
class Site {
public:
    Site(const Manifest& manifest, const SiteRecord& record, const RuntimeOptions& options);
    ~Site();
    Site(const Site&) = delete;
    Site& operator=(const Site&) = delete;

    const SiteRecord& record() const { return record_; }
    void run(std::int64_t batch, const std::vector<const float*>& inputs, float* output);
    // Needs a GPU provider; returns when the outputs are written (ONNX Runtime synchronises its stream at the run's end).
    void run_device(std::int64_t batch, const std::vector<const void*>& inputs, void* output);

private:
    void bind_and_run(std::int64_t batch, const std::vector<const void*>& inputs, void* output, const OrtMemoryInfo* memory);
    struct State;
    SiteRecord record_;
    std::unique_ptr<State> state_;
};

// Where to look for a library the kit loads at run time (ONNX Runtime, cuFFT): $`variable` if set, else names[0]
// beside the kit's library (the build tree and an installed prefix put them there), then every name on the system
// search path.
std::vector<std::string> library_candidates(const char* variable, const std::vector<std::string>& names);
// dlopen of the first candidate that loads (its path in `loaded`), else nullptr with every dlerror in `errors`.
void* open_first_library(const std::vector<std::string>& candidates, std::string& loaded, std::string& errors);

// The ONNX Runtime library version that is loaded (loads it if needed).
std::string onnxruntime_version(const std::string& library = "");

}  // namespace fastgen::kit
