// The GPU step ops (gpu_ops.cu, nvcc) and spectral ops (gpu_fft.cpp, cuFFT) against the CPU ops (ops.cpp, g++):
// both compile the same headers. Runs only where a CUDA GPU is present; elsewhere every test but the first skips.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "error.hpp"
#include "fake_sites.hpp"
#include "fft.hpp"
#include "gpu_fft.hpp"
#include "gpu_ops.hpp"
#include "gpu_program.hpp"
#include "ops.hpp"
#include "session.hpp"

using fastgen::kit::Rows;

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
    fastgen::kit::draw_normals(42, op, 0, 0, count, values.data());
    return values;
}

template <typename T>
double max_difference(const std::vector<T>& a, const std::vector<T>& b) {
    double worst = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
    return worst;
}

double max_abs(const std::vector<float>& values) {
    double worst = 0.0;
    for (float value : values) worst = std::max(worst, std::abs(static_cast<double>(value)));
    return worst;
}

// A device op's float32 output against the CPU op's: both compute in float64 from the same inputs and differ only by
// the FFTs' rounding (~1e-16 relative), so they agree to float32's resolution, a few units in the last place.
void expect_float32_equal(const std::vector<float>& device, const std::vector<float>& host) {
    const double scale = max_abs(host);
    ASSERT_GT(scale, 0.1);  // the comparison can fail
    EXPECT_LE(max_difference(device, host), 5e-7 * std::max(1.0, scale));
}

}  // namespace

#define REQUIRE_GPU() \
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU here"

// First in this file: the process has not loaded cuFFT yet (ctest runs each test in its own process). Needs no GPU.
TEST(GpuFft, AMissingCufftIsOneClearError) {
    setenv("FASTGEN_CUFFT_LIBRARY", "/nonexistent/libcufft.so.12", 1);
    try {
        fastgen::kit::gpu::require_cufft();
        ADD_FAILURE() << "cuFFT loaded from a path that does not exist";
    } catch (const fastgen::kit::Failure& failure) {
        const std::string message = failure.what();
        EXPECT_EQ(failure.status, FASTGEN_ERROR_RUNTIME);
        EXPECT_NE(message.find("libcufft.so.12"), std::string::npos) << message;
        EXPECT_NE(message.find("/nonexistent/libcufft.so.12"), std::string::npos) << message;
        EXPECT_NE(message.find("nvidia-cufft"), std::string::npos) << message;
        EXPECT_NE(message.find("provider cpu"), std::string::npos) << message;
    }
    unsetenv("FASTGEN_CUFFT_LIBRARY");
}

// Rows of P = 1001 elements (not a multiple of 4: rows start inside counters) for mixed seeds and image indices.
TEST(GpuOps, NoiseMatchesTheHostContract) {
    REQUIRE_GPU();
    const std::int64_t per_image = 1001;
    const std::vector<std::uint64_t> seeds{42, 9, 42, 5}, indices{0, 5, 3, 1ULL << 60};
    const auto rows = static_cast<std::int64_t>(seeds.size());
    DeviceBuffer device(static_cast<std::size_t>(rows * per_image));
    std::uint64_t *device_seeds = nullptr, *device_indices = nullptr;
    cudaMalloc(&device_seeds, seeds.size() * sizeof(std::uint64_t));
    cudaMalloc(&device_indices, indices.size() * sizeof(std::uint64_t));
    cudaMemcpy(device_seeds, seeds.data(), seeds.size() * sizeof(std::uint64_t), cudaMemcpyHostToDevice);
    cudaMemcpy(device_indices, indices.data(), indices.size() * sizeof(std::uint64_t), cudaMemcpyHostToDevice);
    fastgen::kit::gpu::draw_normals(device_seeds, device_indices, rows, per_image, 3, 0, device.data, nullptr);
    std::vector<float> expected(device.size);
    for (std::int64_t r = 0; r < rows; ++r)
        fastgen::kit::draw_normals(seeds[r], 3, 0, indices[r] * per_image, per_image, expected.data() + r * per_image);
    EXPECT_LE(max_difference(device.host(), expected), 2e-5);  // float32 Box–Muller vs the float64 reference
    cudaFree(device_seeds);
    cudaFree(device_indices);
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

// The spectral ops on device buffers against the CPU ops on the same inputs (gpu_fft.cpp vs ops.cpp).
namespace {

std::vector<double> doubles(const std::vector<float>& values) { return {values.begin(), values.end()}; }

// Device float32 buffers of `inputs`, `run` on them, and the result buffer `out` (of out_count) back.
struct SpectralCase {
    fastgen::kit::gpu::DeviceCache cache{nullptr};
    std::vector<float> device_output(std::size_t out_count, const std::vector<const std::vector<float>*>& inputs,
                                     const std::function<void(const std::vector<const float*>&, float*)>& run) {
        std::vector<std::unique_ptr<DeviceBuffer>> buffers;
        std::vector<const float*> pointers;
        for (const std::vector<float>* input : inputs) {
            if (input == nullptr) {
                pointers.push_back(nullptr);
                continue;
            }
            buffers.push_back(std::make_unique<DeviceBuffer>(*input));
            pointers.push_back(buffers.back()->data);
        }
        DeviceBuffer out(out_count);
        run(pointers, out.data);
        return out.host();
    }
};

}  // namespace

TEST(GpuFft, DctPassesEqualFftCpp) {
    REQUIRE_GPU();
    const int height = 6, width = 10, planes = 3;
    const std::vector<double> in = doubles(normals(planes * height * width, 7));
    std::vector<double> expected(in.size()), inverse(in.size());
    for (int p = 0; p < planes; ++p) {
        fastgen::kit::dct2_ortho(in.data() + p * height * width, height, width, expected.data() + p * height * width);
        fastgen::kit::idct2_ortho(in.data() + p * height * width, height, width, inverse.data() + p * height * width);
    }
    fastgen::kit::gpu::DeviceCache cache(nullptr);
    double* device = cache.array<double>("in", planes * height * width);
    double* scratch = cache.array<double>("scratch", planes * height * width);
    double* out = cache.array<double>("out", planes * height * width);
    const double* rows = cache.constant("rows", fastgen::kit::dct_matrix(width));
    const double* columns = cache.constant("columns", fastgen::kit::dct_matrix(height));
    cudaMemcpy(device, in.data(), in.size() * sizeof(double), cudaMemcpyHostToDevice);
    std::vector<double> result(in.size());
    for (bool transpose : {false, true}) {
        fastgen::kit::gpu::dct_pass(device, planes, height, width, rows, true, transpose, scratch, nullptr);
        fastgen::kit::gpu::dct_pass(scratch, planes, height, width, columns, false, transpose, out, nullptr);
        cudaMemcpy(result.data(), out, result.size() * sizeof(double), cudaMemcpyDeviceToHost);
        EXPECT_LE(max_difference(result, transpose ? inverse : expected), 1e-12);
    }
}

class GpuFilter : public testing::TestWithParam<const char*> {};  // basis

TEST_P(GpuFilter, EqualsTheCpuOp) {
    REQUIRE_GPU();
    const std::string basis = GetParam();
    for (const fastgen::kit::Shape4 shape : {fastgen::kit::Shape4{2, 3, 8, 12}, fastgen::kit::Shape4{1, 2, 7, 9}}) {  // even and odd sides
        const std::int64_t columns = basis == "fourier" ? shape.width / 2 + 1 : shape.width;
        std::vector<double> values = doubles(normals(shape.height * columns, 11));
        for (double& value : values) value = std::abs(value);
        const std::vector<float> x = normals(shape.count(), 12);
        std::vector<float> expected = x;
        fastgen::kit::spectral_filter(basis, values, shape, expected.data());
        SpectralCase on_device;
        const std::vector<float> result = on_device.device_output(x.size(), {&x}, [&](const std::vector<const float*>& in, float* out) {
            cudaMemcpy(out, in[0], x.size() * sizeof(float), cudaMemcpyDeviceToDevice);
            fastgen::kit::gpu::spectral_filter(on_device.cache, "filter", basis, values, shape, out);  // in place, as the noise op
        });
        expect_float32_equal(result, expected);
    }
}

INSTANTIATE_TEST_SUITE_P(Ops, GpuFilter, testing::Values("fourier", "dct"));

class GpuBlur : public testing::TestWithParam<std::tuple<std::string, bool>> {};  // (basis, noisy)

TEST_P(GpuBlur, StepEqualsTheCpuOp) {
    REQUIRE_GPU();
    const std::string basis = std::get<0>(GetParam());
    const bool noisy = std::get<1>(GetParam());
    for (const fastgen::kit::Shape4 shape : {fastgen::kit::Shape4{2, 3, 8, 12}, fastgen::kit::Shape4{1, 2, 7, 9}}) {
        const std::int64_t columns = basis == "fourier" ? shape.width / 2 + 1 : shape.width;
        const std::vector<float> coefficients = normals(3 * shape.height * columns, 13);
        const std::vector<float> x = normals(shape.count(), 14), eps = normals(shape.count(), 15), z = normals(shape.count(), 16);
        std::vector<float> expected(x.size());
        fastgen::kit::blur_step(basis, coefficients, x.data(), eps.data(), noisy ? z.data() : nullptr, shape, expected.data());
        SpectralCase on_device;
        const std::vector<float> result =
            on_device.device_output(x.size(), {&x, &eps, noisy ? &z : nullptr}, [&](const std::vector<const float*>& in, float* out) {
                fastgen::kit::gpu::blur_step(on_device.cache, "step", basis, coefficients, in[0], in[1], in[2], shape, out);
            });
        expect_float32_equal(result, expected);
    }
}

INSTANTIATE_TEST_SUITE_P(Ops, GpuBlur, testing::Combine(testing::Values(std::string("fourier"), std::string("dct")), testing::Bool()),
                         [](const testing::TestParamInfo<GpuBlur::ParamType>& info) {
                             return std::get<0>(info.param) + (std::get<1>(info.param) ? "_noisy" : "_noiseless");
                         });

TEST(GpuFft, UdpmMatheronEqualsTheCpuOp) {
    REQUIRE_GPU();
    for (const bool noisy : {false, true})
        for (const int gamma : {2, 3}) {
            const fastgen::kit::Shape4 low{2, 3, 4, 5}, high{2, 3, 4 * gamma, 5 * gamma};
            fastgen::kit::MatheronConstants c{0.8, 0.3, 0.9, doubles(normals(high.plane(), 21)), doubles(normals(high.plane(), 22)),
                                              doubles(normals(high.plane(), 23))};
            for (double& value : c.prior_cov) value = 0.1 + std::abs(value);
            const std::vector<float> x_l = normals(low.count(), 24), x_hat = normals(high.count(), 25), e = normals(high.count(), 26),
                                     e_prime = normals(low.count(), 27);
            std::vector<float> expected(x_hat.size());
            fastgen::kit::udpm_matheron(c, x_l.data(), x_hat.data(), noisy ? e.data() : nullptr, noisy ? e_prime.data() : nullptr, low, high,
                                        expected.data());
            SpectralCase on_device;
            const std::vector<float> result = on_device.device_output(
                x_hat.size(), {&x_l, &x_hat, noisy ? &e : nullptr, noisy ? &e_prime : nullptr},
                [&](const std::vector<const float*>& in, float* out) {
                    fastgen::kit::gpu::udpm_matheron(on_device.cache, "matheron", c, in[0], in[1], in[2], in[3], low, high, out);
                });
            SCOPED_TRACE("noisy " + std::to_string(noisy) + ", γ " + std::to_string(gamma));
            expect_float32_equal(result, expected);
        }
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
    fastgen::kit::GpuProgram gpu(program, device_sites, 0);
    const std::int64_t batch = fixture["batch"];
    const auto seed = fixture["seed"].get<std::uint64_t>();
    std::int64_t count = batch;
    for (std::int64_t size : fastgen::kit::output_shape(program)) count *= size;
    std::vector<float> expected(static_cast<std::size_t>(count)), first(expected.size()), images(expected.size());
    fastgen::kit::run_program(program, sites, Rows::of_seed(seed, batch), expected.data());
    gpu.run(Rows::of_seed(seed, batch), first.data(), {});
    double scale = 0.0;
    for (float value : expected) scale = std::max(scale, std::abs(static_cast<double>(value)));
    EXPECT_LE(max_difference(first, expected), 1e-4 * std::max(1.0, scale)) << "float32 Box–Muller on the device";
    for (int sample = 0; sample < 2; ++sample) {  // captures, then replays
        gpu.run(Rows::of_seed(seed, batch), images.data(), {});
        EXPECT_EQ(max_difference(images, first), 0.0);
    }
    // Mixed rows: a batch size of its own (eager, capture, replay), against the CPU interpreter's rows; the replays
    // read the rows from device memory, so a replay for other rows draws theirs.
    const Rows mixed = fastgen::test::mixed_rows(), reversed{{mixed.seeds.rbegin(), mixed.seeds.rend()}, {mixed.indices.rbegin(), mixed.indices.rend()}};
    const auto size = static_cast<std::size_t>(mixed.size() * (count / batch));
    std::vector<float> cpu_mixed(size), cpu_reversed(size), gpu_rows(size);
    fastgen::kit::run_program(program, sites, mixed, cpu_mixed.data());
    fastgen::kit::run_program(program, sites, reversed, cpu_reversed.data());
    for (int sample = 0; sample < 3; ++sample) {
        gpu.run(mixed, gpu_rows.data(), {});
        EXPECT_LE(max_difference(gpu_rows, cpu_mixed), 1e-4 * std::max(1.0, scale)) << "sample " << sample;
    }
    gpu.run(reversed, gpu_rows.data(), {});
    EXPECT_LE(max_difference(gpu_rows, cpu_reversed), 1e-4 * std::max(1.0, scale)) << "a replay for other rows";
}

INSTANTIATE_TEST_SUITE_P(Ops, GpuFixture, fastgen::test::fixture_programs());
