// An opened bundle: its manifest, the sites opened by ONNX Runtime and its parsed program — what the C API's
// handle holds and what the benchmark tool times.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "manifest.hpp"
#include "onnxruntime.hpp"
#include "program.hpp"

namespace fastgen::kit {

class GpuProgram;

struct Session {
    Manifest manifest;
    RuntimeOptions runtime;
    std::vector<std::unique_ptr<Site>> opened;
    Sites sites;
    Program program;
    std::shared_ptr<GpuProgram> gpu;  // the device-resident interpreter: a CUDA build opened with a GPU provider

    // Reads and checks the bundle `path` (hashes when `verify`), opens every site, parses the program.
    static std::unique_ptr<Session> open(const std::string& path, const RuntimeOptions& runtime, bool verify);
    std::int64_t image_elements() const;
    // The images of `rows` into `images` (rows.size() · image_elements() floats); refuses batches outside the engines'
    // profile and rows check_rows refuses.
    void sample(const Rows& rows, float* images, const Progress& progress = {}) const;
    // n images for `seed`: the rows (seed, 0 … n − 1).
    void sample(std::int64_t n, std::uint64_t seed, float* images, const Progress& progress = {}) const;
    // Refuses (Failure OUT_OF_MEMORY) n images whose buffers do not fit in the memory left (host, or the GPU's):
    // before anything of size n is made, the rows included.
    void check_memory(std::int64_t n) const;
    bool runs_engines() const { return runtime.provider == Provider::tensorrt || runtime.provider == Provider::nv_tensorrt_rtx; }
};

}  // namespace fastgen::kit
