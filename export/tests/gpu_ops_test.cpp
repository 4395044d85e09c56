// The GPU step ops (gpu_ops.cu, nvcc) against the CPU ops (ops.cpp, g++): both compile the same headers.
// Runs only where a CUDA GPU is present; elsewhere every test skips.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include "gpu_ops.hpp"
#include "ops.hpp"

namespace {

bool have_gpu() {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

// A device copy of `host`, freed at scope exit.
struct DeviceBuffer {
    float* data = nullptr;
    std::size_t size;
    explicit DeviceBuffer(const std::vector<float>& host) : size(host.size()) {
        cudaMalloc(&data, size * sizeof(float));
        cudaMemcpy(data, host.data(), size * sizeof(float), cudaMemcpyHostToDevice);
    }
    explicit DeviceBuffer(std::size_t count) : DeviceBuffer(std::vector<float>(count, 0.0f)) {}
    ~DeviceBuffer() { cudaFree(data); }
    std::vector<float> host() const {
        std::vector<float> values(size);
        cudaDeviceSynchronize();
        cudaMemcpy(values.data(), data, size * sizeof(float), cudaMemcpyDeviceToHost);
        return values;
    }
};

std::vector<float> normals(std::int64_t count, std::uint32_t op) {
    std::vector<float> values(static_cast<std::size_t>(count));
    fastgen::kit::draw_normals(42, op, 0, count, values.data());
    return values;
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
    double worst = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
    return worst;
}

}  // namespace

#define REQUIRE_GPU() \
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU here"

TEST(GpuOps, NoiseMatchesTheHostContract) {
    REQUIRE_GPU();
    const std::int64_t count = 1001;
    DeviceBuffer device(static_cast<std::size_t>(count));
    fastgen::kit::gpu::draw_normals(42, 3, 0, count, device.data, nullptr);
    EXPECT_LE(max_difference(device.host(), normals(count, 3)), 2e-5);  // float32 Box–Muller vs the float64 reference
}

TEST(GpuOps, StepsMatchTheCpuOps) {
    REQUIRE_GPU();
    const fastgen::kit::Shape4 high{2, 3, 8, 12}, low{2, 3, 4, 6};
    const std::vector<float> x = normals(high.count(), 1), m = normals(high.count(), 2), z = normals(high.count(), 3),
                             y = normals(low.count(), 4);
    DeviceBuffer dx(x), dm(m), dz(z), dy(y), out(x.size()), up(static_cast<std::size_t>(4 * low.count()));

    std::vector<float> expected(x.size());
    fastgen::kit::affine_step({0.9f, -0.2f, 0.5f, 0.4f, 0.1f, 0.3f, true}, x.data(), m.data(), z.data(), high.count(), expected.data());
    fastgen::kit::gpu::affine_step(dx.data, dm.data, dz.data, high.count(), 0.9f, -0.2f, true, 0.5f, 0.4f, 0.1f, 0.3f, out.data, nullptr);
    EXPECT_LE(max_difference(out.host(), expected), 1e-6);

    const fastgen::kit::PosteriorConstants c{2, {0.5f, 0.5f, 0.5f, 0.5f}, 0.9f, -0.3f, 0.7f, 0.2f, 0.05f};
    fastgen::kit::udpm_posterior(c, y.data(), x.data(), z.data(), high, expected.data());
    fastgen::kit::gpu::udpm_posterior(dy.data, dx.data, dz.data, low.planes(), low.height, low.width, 2, c.taps.data(), c.kx, c.kp, c.ky,
                                      c.ke, c.kep, out.data, nullptr);
    EXPECT_LE(max_difference(out.host(), expected), 1e-6);

    std::vector<float> upsampled(up.size);
    fastgen::kit::upsample(y.data(), low, upsampled.data());
    fastgen::kit::gpu::upsample(dy.data, low.planes(), low.height, low.width, up.data, nullptr);
    EXPECT_LE(max_difference(up.host(), upsampled), 1e-6);

    fastgen::kit::renoise(x.data(), z.data(), 0.6f, 0.8f, high.count(), expected.data());
    fastgen::kit::gpu::renoise(dx.data, dz.data, 0.6f, 0.8f, high.count(), out.data, nullptr);
    EXPECT_LE(max_difference(out.host(), expected), 1e-6);
}
