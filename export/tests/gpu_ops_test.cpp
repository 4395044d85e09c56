// The GPU step ops (gpu_ops.cu, nvcc) against the CPU ops (ops.cpp, g++): both compile the same headers.
// Runs only where a CUDA GPU is present; elsewhere every test skips.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "error.hpp"
#include "fake_sites.hpp"
#include "gpu_ops.hpp"
#include "gpu_program.hpp"
#include "ops.hpp"
#include "session.hpp"

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
    std::uint64_t* seed = nullptr;
    const std::uint64_t host_seed = 42;
    cudaMalloc(&seed, sizeof(host_seed));
    cudaMemcpy(seed, &host_seed, sizeof(host_seed), cudaMemcpyHostToDevice);
    fastgen::kit::gpu::draw_normals(seed, 3, 0, count, device.data, nullptr);
    EXPECT_LE(max_difference(device.host(), normals(count, 3)), 2e-5);  // float32 Box–Muller vs the float64 reference
    cudaFree(seed);
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

TEST(GpuOps, TimestepsReachTheSitesAsTheHostConvertsThem) {
    REQUIRE_GPU();
    const std::int64_t batch = 5;
    DeviceBuffer t(static_cast<std::size_t>(batch));
    fastgen::kit::gpu::fill(41.75f, batch, t.data, nullptr);
    std::int64_t* converted = nullptr;
    cudaMalloc(&converted, batch * sizeof(std::int64_t));
    fastgen::kit::gpu::from_float(t.data, batch, "int64", converted, nullptr);
    std::vector<std::int64_t> host(static_cast<std::size_t>(batch));
    cudaDeviceSynchronize();
    cudaMemcpy(host.data(), converted, batch * sizeof(std::int64_t), cudaMemcpyDeviceToHost);
    cudaFree(converted);
    for (std::int64_t value : host) EXPECT_EQ(value, 41);  // truncation toward zero, as torch's .to(int64)
}

// The device-resident interpreter (a real bundle through ONNX Runtime's CUDA provider) against the CPU one; the
// second and third samples of a batch size capture and replay the CUDA graphs and must draw the first one's images.
TEST(GpuProgram, SamplesEqualTheCpuInterpreterAndReplaysItsGraphs) {
    REQUIRE_GPU();
    const char* fixtures = std::getenv("FASTGEN_FIXTURE_DIR");
    if (fixtures == nullptr) GTEST_SKIP() << "FASTGEN_FIXTURE_DIR is not set (ctest runs make_fixtures.py first)";
    const std::string bundle = std::string(fixtures) + "/udpm_bundle";
    fastgen::kit::RuntimeOptions cpu, cuda;
    cpu.threads = 1;
    cuda.provider = fastgen::kit::Provider::cuda;
    std::unique_ptr<fastgen::kit::Session> on_gpu;
    try {
        on_gpu = fastgen::kit::Session::open(bundle, cuda, true);
    } catch (const fastgen::kit::Failure& failure) {
        if (std::string(failure.what()).find("is not available") != std::string::npos) GTEST_SKIP() << failure.what();
        throw;
    }
    ASSERT_TRUE(on_gpu->gpu);
    const auto on_cpu = fastgen::kit::Session::open(bundle, cpu, true);
    const std::int64_t n = 2;
    const auto size = static_cast<std::size_t>(n * on_cpu->image_elements());
    std::vector<float> expected(size), first(size), images(size);
    on_cpu->sample(n, 5, expected.data());
    on_gpu->sample(n, 5, first.data());  // eager: allocates
    // Float32 Box–Muller on the device and the CUDA provider's convolutions (TF32 where the GPU has it) round differently.
    EXPECT_LE(max_difference(first, expected), 5e-3);
    for (int sample = 0; sample < 2; ++sample) {  // captures, then replays
        on_gpu->sample(n, 5, images.data());
        EXPECT_LE(max_difference(images, first), 1e-6);
    }
    on_gpu->sample(n, 6, images.data());  // a replay draws the new seed's noise
    on_cpu->sample(n, 6, expected.data());
    EXPECT_LE(max_difference(images, expected), 5e-3);
    EXPECT_GT(max_difference(images, first), 1e-2);
}

// The GPU interpreter over make_fixtures.py's fake sites (run on the host between device copies, so this needs no
// ONNX Runtime with a GPU provider) against the CPU interpreter, for every fixture program; the second and third
// samples capture and replay the CUDA graphs and must give the first one's images exactly.
class GpuFixture : public testing::TestWithParam<const char*> {};

TEST_P(GpuFixture, EqualsTheCpuInterpreterAndReplaysItsGraphs) {
    REQUIRE_GPU();
    const char* fixtures = std::getenv("FASTGEN_FIXTURE_DIR");
    if (fixtures == nullptr) GTEST_SKIP() << "FASTGEN_FIXTURE_DIR is not set (ctest runs make_fixtures.py first)";
    std::ifstream stream(std::string(fixtures) + "/" + GetParam() + ".json");
    const nlohmann::json fixture = nlohmann::json::parse(stream);
    const fastgen::kit::Sites sites = fastgen::test::fake_sites(fixture["program"]);
    const fastgen::kit::Program program = fastgen::kit::parse_program(fixture["program"], GetParam(), sites);
    fastgen::kit::DeviceSites device_sites;
    for (const auto& entry : sites) {
        const fastgen::kit::SiteFunction* function = &entry.second;
        fastgen::kit::SiteRecord record;
        record.name = entry.first;
        for (const auto& shape : function->inputs) record.inputs.push_back({"input", shape, "float32"});
        record.output = {"output", function->output, "float32"};
        auto elements = [](const std::vector<std::int64_t>& shape) {
            std::int64_t count = 1;
            for (std::int64_t size : shape) count *= size;
            return static_cast<std::size_t>(count);
        };
        device_sites[entry.first] = {record, [function, record, elements](std::int64_t batch, const std::vector<const void*>& inputs, void* output) {
                                         std::vector<std::vector<float>> host;
                                         for (std::size_t i = 0; i < inputs.size(); ++i) {
                                             host.emplace_back(static_cast<std::size_t>(batch) * elements(record.inputs[i].shape));
                                             cudaMemcpy(host.back().data(), inputs[i], host.back().size() * sizeof(float), cudaMemcpyDeviceToHost);
                                         }
                                         std::vector<const float*> pointers;
                                         for (const std::vector<float>& values : host) pointers.push_back(values.data());
                                         std::vector<float> result(static_cast<std::size_t>(batch) * elements(record.output.shape));
                                         function->run(batch, pointers, result.data());
                                         cudaMemcpy(output, result.data(), result.size() * sizeof(float), cudaMemcpyHostToDevice);
                                     }};
    }
    fastgen::kit::GpuProgram gpu(program, sites, device_sites, 0);
    const std::int64_t batch = fixture["batch"];
    const auto seed = fixture["seed"].get<std::uint64_t>();
    std::int64_t count = batch;
    for (std::int64_t size : fastgen::kit::output_shape(program)) count *= size;
    std::vector<float> expected(static_cast<std::size_t>(count)), first(expected.size()), images(expected.size());
    fastgen::kit::run_program(program, sites, batch, seed, expected.data());
    gpu.run(batch, seed, first.data(), {});
    double scale = 0.0;
    for (float value : expected) scale = std::max(scale, std::abs(static_cast<double>(value)));
    EXPECT_LE(max_difference(first, expected), 1e-4 * std::max(1.0, scale)) << "float32 Box–Muller on the device";
    for (int sample = 0; sample < 2; ++sample) {  // captures, then replays
        gpu.run(batch, seed, images.data(), {});
        EXPECT_EQ(max_difference(images, first), 0.0);
    }
}

INSTANTIATE_TEST_SUITE_P(Ops, GpuFixture,
                         testing::Values("udpm_box", "udpm_gaussian", "ddpm_ancestral", "ddim_clip", "blur_fourier", "blur_dct", "pddpm",
                                         "udpm_posterior_gamma3", "dct_noise_upsample_renoise"));
