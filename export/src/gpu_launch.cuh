// How the kit's kernels (gpu_ops.cu, gpu_spectral.cu) are launched: 256 threads a block, grid-stride loops over at
// most 65535 blocks, on the caller's stream.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu_ops.hpp"

namespace fastgen::kit::gpu {

inline constexpr int kThreads = 256;

inline unsigned blocks_for(std::int64_t work) {
    return static_cast<unsigned>((work + kThreads - 1) / kThreads < 65535 ? (work + kThreads - 1) / kThreads : 65535);
}
inline cudaStream_t as_stream(Stream stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace fastgen::kit::gpu

// for (i = this thread's first index; i < count; i += the grid's size)
#define FASTGEN_GRID_LOOP(i, count)                                                                         \
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < (count); \
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
