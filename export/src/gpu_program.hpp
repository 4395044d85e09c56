// The sampling program on a CUDA GPU (built with nvcc, run with a GPU provider): every program buffer lives in
// device memory, sites read and write it through ONNX Runtime's IO binding, the step ops are gpu_ops.cu's kernels,
// the spectral ops (filtered noise, udpm_matheron, blur chains) are gpu_fft.cpp's float64 cuFFT transforms around
// gpu_spectral.cu's kernels, and the noise is drawn on the device under the program's Philox contract; nothing
// passes through the host but the rows' keys (a seed and an image index per row, in) and the images (one copy to
// the caller at the end).
//
// CUDA graphs: per batch size, the first sample runs eagerly (it allocates the buffers and makes the cuFFT plans,
// bound to the program's stream), the second captures each run of step ops and transforms between two network calls
// into a graph, and later samples replay those graphs. The network calls themselves stay outside: ONNX Runtime
// runs them on its own stream and synchronises it inside Run, which a stream capture does not allow, so no graph
// spans a call. (ORT's own CUDA-graph option, enable_cuda_graph, would capture a session's Run for fixed
// addresses; the kit does not turn it on.)
//
// cuFFT is loaded at run time (gpu_fft.hpp), when a program with spectral ops is opened on a GPU provider.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "onnxruntime.hpp"
#include "program.hpp"

namespace fastgen::kit {

// A site as the GPU interpreter calls it: device buffers in the record's types and shapes (with batch first).
struct DeviceSite {
    SiteRecord record;
    std::function<void(std::int64_t batch, const std::vector<const void*>& inputs, void* output)> run;
};
using DeviceSites = std::map<std::string, DeviceSite>;

class GpuProgram {
public:
    // `program` must outlive this. Throws Failure when the program needs what this machine lacks (cuFFT, …).
    GpuProgram(const Program& program, DeviceSites sites, int device);
    ~GpuProgram();
    GpuProgram(const GpuProgram&) = delete;
    GpuProgram& operator=(const GpuProgram&) = delete;

    // As run_program: the images of `rows` into the host buffer `out`. One sample at a time per GpuProgram.
    void run(const Rows& rows, float* out, const Progress& progress);
    // Refuses (Failure OUT_OF_MEMORY) a first sample of `batch` images whose buffers would not fit in the free GPU memory.
    void check_memory(std::int64_t batch);

private:
    struct Workspace;
    class Run;
    const Program& program_;
    DeviceSites sites_;
    int device_;
    void* stream_ = nullptr;  // cudaStream_t
    std::map<std::int64_t, std::unique_ptr<Workspace>> workspaces_;  // per batch size
    std::mutex running_;
};

}  // namespace fastgen::kit
