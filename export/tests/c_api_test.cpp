// The C API's boundary: statuses and messages instead of exceptions, and the 8-bit conversion.
#include <gtest/gtest.h>

#include <fastgen/fastgen.h>
#include <fastgen/fastgen.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

TEST(CApi, NullArgumentsAreErrorsNotCrashes) {
    EXPECT_EQ(fastgen_open(nullptr, nullptr, nullptr), FASTGEN_ERROR_ARGUMENT);
    EXPECT_EQ(std::string(fastgen_last_error()), "bundle must not be NULL");
    fastgen_bundle* bundle = reinterpret_cast<fastgen_bundle*>(1);
    EXPECT_EQ(fastgen_open(nullptr, nullptr, &bundle), FASTGEN_ERROR_ARGUMENT);
    EXPECT_EQ(bundle, nullptr);
    EXPECT_EQ(fastgen_sample(nullptr, 1, 0, nullptr, 0), FASTGEN_ERROR_ARGUMENT);
    int64_t batch = 0;
    EXPECT_EQ(fastgen_max_batch(nullptr, &batch), FASTGEN_ERROR_ARGUMENT);
    fastgen_close(nullptr);
}

TEST(CApi, BadBundlesAndProvidersSayWhatToDo) {
    fastgen::test::TempDir dir;
    fastgen_bundle* bundle = nullptr;
    EXPECT_EQ(fastgen_open(dir.str().c_str(), nullptr, &bundle), FASTGEN_ERROR_BUNDLE);
    EXPECT_NE(std::string(fastgen_last_error()).find("is not a bundle (no manifest.json); make one with `fastgen export"), std::string::npos);
    fastgen_options options;
    fastgen_options_init(&options);
    options.provider = "vulkan";
    EXPECT_EQ(fastgen_open(dir.str().c_str(), &options, &bundle), FASTGEN_ERROR_ARGUMENT);
    EXPECT_EQ(std::string(fastgen_last_error()), "unknown execution provider 'vulkan'; choose one of cpu, cuda, tensorrt, nv_tensorrt_rtx");
    options.provider = "cpu";
    options.threads = -1;
    EXPECT_EQ(fastgen_open(dir.str().c_str(), &options, &bundle), FASTGEN_ERROR_ARGUMENT);
}

TEST(CApi, CppWrapperThrowsTheStatusAndMessage) {
    try {
        fastgen::Bundle bundle("/nonexistent/bundle");
        FAIL() << "no exception";
    } catch (const fastgen::Error& error) {
        EXPECT_EQ(error.status(), FASTGEN_ERROR_BUNDLE);
        EXPECT_NE(std::string(error.what()).find("/nonexistent/bundle is not a bundle"), std::string::npos);
    }
}

TEST(CApi, EightBitIsNhwcRoundedAndClamped) {
    // One image, 2 channels, 1×2 pixels; NCHW in.
    const float images[] = {-1.0f, 1.0f, -2.0f, NAN};
    uint8_t pixels[4] = {};
    fastgen_images_to_u8(images, 1, 2, 1, 2, pixels);
    EXPECT_EQ(pixels[0], 0);    // pixel 0, channel 0: -1 → 0
    EXPECT_EQ(pixels[1], 0);    // pixel 0, channel 1: -2 → clamped
    EXPECT_EQ(pixels[2], 255);  // pixel 1, channel 0: 1 → 255
    EXPECT_EQ(pixels[3], 0);    // NaN → 0
    const float middle[] = {-0.5f};  // (x + 1)·127.5 = 63.75 → 64
    fastgen_images_to_u8(middle, 1, 1, 1, 1, pixels);
    EXPECT_EQ(pixels[0], 64);
}

TEST(CApi, VersionAndFormat) {
    EXPECT_STREQ(fastgen_version(), "0.1.0");
    EXPECT_EQ(fastgen_bundle_format_version(), 2);
}

TEST(CApi, SamplesARealBundleLikePython) {
    const char* fixtures = std::getenv("FASTGEN_FIXTURE_DIR");
    if (fixtures == nullptr) GTEST_SKIP() << "FASTGEN_FIXTURE_DIR is not set (ctest runs make_fixtures.py first)";
    const std::filesystem::path dir = fixtures;
    fastgen::Bundle bundle((dir / "udpm_bundle").string(), fastgen::Options().threads(1));
    EXPECT_EQ(bundle.family(), "udpm");
    EXPECT_EQ(bundle.precision(), "fp32");
    EXPECT_EQ(bundle.max_batch(), 0);  // the CPU provider takes any batch
    const fastgen::ImageShape shape = bundle.image_shape();
    EXPECT_EQ(shape.channels, 1);
    EXPECT_EQ(shape.height, 16);
    std::vector<std::pair<int64_t, int64_t>> calls;
    bundle.set_progress(
        [](int64_t done, int64_t total, void* seen) { static_cast<std::vector<std::pair<int64_t, int64_t>>*>(seen)->emplace_back(done, total); },
        &calls);
    const std::vector<float> images = bundle.sample(2, 5);
    EXPECT_EQ(calls, (std::vector<std::pair<int64_t, int64_t>>{{1, 3}, {2, 3}, {3, 3}}));  // UDPM: three level calls
    bundle.set_progress(nullptr);
    std::vector<float> expected(images.size());
    std::ifstream raw(dir / "udpm_bundle.f32", std::ios::binary);
    raw.read(reinterpret_cast<char*>(expected.data()), static_cast<std::streamsize>(expected.size() * sizeof(float)));
    ASSERT_TRUE(raw);
    double worst = 0.0, scale = 0.0;
    for (std::size_t i = 0; i < images.size(); ++i) {
        worst = std::max(worst, std::abs(static_cast<double>(images[i]) - expected[i]));
        scale = std::max(scale, std::abs(static_cast<double>(expected[i])));
    }
    EXPECT_GT(scale, 0.1);
    EXPECT_LE(worst, 1e-5);
    EXPECT_EQ(bundle.sample_u8(2, 5), bundle.to_u8(images));
    std::vector<float> small(10);
    EXPECT_EQ(fastgen_sample(bundle.get(), 2, 5, small.data(), small.size()), FASTGEN_ERROR_ARGUMENT);
    EXPECT_EQ(std::string(fastgen_last_error()), "the buffer holds 10 values; 2 images need 512");
    EXPECT_EQ(fastgen_sample(bundle.get(), 0, 5, small.data(), small.size()), FASTGEN_ERROR_ARGUMENT);
}

// fastgen_sample_rows through the C boundary on a real bundle: each row is its seed's image at its index; the
// refusals are statuses.
TEST(CApi, SampleRowsEqualsEachSeedsSample) {
    const char* fixtures = std::getenv("FASTGEN_FIXTURE_DIR");
    if (fixtures == nullptr) GTEST_SKIP() << "FASTGEN_FIXTURE_DIR is not set (ctest runs make_fixtures.py first)";
    fastgen::Bundle bundle((std::filesystem::path(fixtures) / "udpm_bundle").string(), fastgen::Options().threads(1));
    const std::size_t per_image = static_cast<std::size_t>(bundle.image_shape().elements());
    const std::vector<std::uint64_t> seeds{5, 9, 5}, indices{1, 0, 0};
    const std::vector<float> rows = bundle.sample_rows(seeds, indices);
    const std::vector<float> five = bundle.sample(2, 5), nine = bundle.sample(1, 9);
    EXPECT_TRUE(std::equal(five.begin() + per_image, five.end(), rows.begin()));
    EXPECT_TRUE(std::equal(nine.begin(), nine.end(), rows.begin() + per_image));
    EXPECT_TRUE(std::equal(five.begin(), five.begin() + per_image, rows.begin() + 2 * per_image));
    std::vector<std::uint8_t> pixels(rows.size());
    bundle.sample_rows_u8(seeds, indices, pixels);
    EXPECT_EQ(pixels, bundle.to_u8(rows));

    std::vector<float> images(rows.size());
    const std::uint64_t huge[] = {UINT64_MAX, 0, 0};
    EXPECT_EQ(fastgen_sample_rows(bundle.get(), 3, seeds.data(), huge, images.data(), images.size()), FASTGEN_ERROR_ARGUMENT);
    EXPECT_EQ(std::string(fastgen_last_error()).rfind("row 0: image index 18446744073709551615 is too large", 0), 0u);
    EXPECT_EQ(fastgen_sample_rows(bundle.get(), 3, nullptr, indices.data(), images.data(), images.size()), FASTGEN_ERROR_ARGUMENT);
    EXPECT_EQ(std::string(fastgen_last_error()), "seeds must not be NULL");
    EXPECT_EQ(fastgen_sample_rows(bundle.get(), 4, seeds.data(), indices.data(), images.data(), images.size()), FASTGEN_ERROR_ARGUMENT);
    EXPECT_EQ(std::string(fastgen_last_error()), "the buffer holds 768 values; 4 images need 1024");
    const std::vector<std::uint64_t> one_index{0};
    try {
        bundle.sample_rows(seeds, one_index);
        FAIL() << "no exception";
    } catch (const fastgen::Error& error) {
        EXPECT_EQ(error.status(), FASTGEN_ERROR_ARGUMENT);
        EXPECT_STREQ(error.what(), "the rows have 3 seeds but 1 image indices");
    }
}

// Issue 20, classes 2 and 6 at the C boundary, on a copy of a real bundle opened without verify (so the edits need
// no re-hashing): a program that disagrees with its manifest is refused at open; a batch too large for the memory is
// FASTGEN_ERROR_OUT_OF_MEMORY before any work.
TEST(CApi, RefusesProgramsThatDisagreeWithTheirManifest) {
    const char* fixtures = std::getenv("FASTGEN_FIXTURE_DIR");
    if (fixtures == nullptr) GTEST_SKIP() << "FASTGEN_FIXTURE_DIR is not set (ctest runs make_fixtures.py first)";
    using nlohmann::json;
    const auto read = [](const std::filesystem::path& path) { return json::parse(std::ifstream(path)); };
    const std::vector<std::pair<std::function<void(json&, json&)>, std::string>> cases{
        {[](json& manifest, json&) { manifest["model"]["image"]["resolution"] = 8; },
         ": its program makes images of shape [1, 16, 16], but the manifest declares [1, 8, 8]; re-export the bundle"},
        {[](json&, json& program) { program["buffers"]["junk"] = {1, 64, 64}; },
         ": its program's buffer 'junk' [1, 64, 64] is larger than the [1, 16, 16] images it makes; re-export the bundle"},
        {[](json& manifest, json&) { manifest["model"].erase("image"); },
         ": manifest.model.image.channels must be an integer from 1 to 65536; re-export the bundle"},
        {[](json& manifest, json&) { manifest["sites"][0]["output"]["dtype"] = "float16"; },
         ": its program's op 5 (call) passes level_1 [((1, 8, 8), 'float32')] → (1, 16, 16), but the manifest's site takes "
         "[((1, 8, 8), 'float32')] → (1, 16, 16); re-export the bundle"},
    };
    for (const auto& [change, expected] : cases) {
        fastgen::test::TempDir dir;
        const std::filesystem::path bundle = dir.path() / "bundle";
        std::filesystem::copy(std::filesystem::path(fixtures) / "udpm_bundle", bundle);
        json manifest = read(bundle / "manifest.json"), program = read(bundle / "program.json");
        change(manifest, program);
        fastgen::test::write_file(bundle / "manifest.json", manifest.dump());
        fastgen::test::write_file(bundle / "program.json", program.dump());
        fastgen_options options;
        fastgen_options_init(&options);
        options.verify = 0;
        fastgen_bundle* opened = nullptr;
        EXPECT_EQ(fastgen_open(bundle.string().c_str(), &options, &opened), FASTGEN_ERROR_BUNDLE) << expected;
        EXPECT_EQ(std::string(fastgen_last_error()), "bundle " + bundle.string() + expected);
        fastgen_close(opened);
    }
}

TEST(CApi, TooManyImagesIsOutOfMemoryBeforeAnyWork) {
    const char* fixtures = std::getenv("FASTGEN_FIXTURE_DIR");
    if (fixtures == nullptr) GTEST_SKIP() << "FASTGEN_FIXTURE_DIR is not set (ctest runs make_fixtures.py first)";
    fastgen::Bundle bundle((std::filesystem::path(fixtures) / "udpm_bundle").string(), fastgen::Options().threads(1));
    float never_written = 0.0f;  // the buffer claims room for every image: only the memory estimate can refuse
    EXPECT_EQ(fastgen_sample(bundle.get(), std::int64_t{1} << 40, 5, &never_written, SIZE_MAX), FASTGEN_ERROR_OUT_OF_MEMORY);
    EXPECT_EQ(std::string(fastgen_last_error()).rfind("sampling 1099511627776 images needs about ", 0), 0u) << fastgen_last_error();
    EXPECT_EQ(fastgen_sample(bundle.get(), INT64_MAX, 5, &never_written, 100), FASTGEN_ERROR_ARGUMENT);  // n · 256 overflows
    EXPECT_EQ(std::string(fastgen_last_error()), "the buffer holds 100 values; 9223372036854775807 images need more than 2^64");
    try {  // the C++ wrapper's own buffer: n · C·H·W overflows, an Error and no allocation
        bundle.sample(INT64_MAX, 5);
        FAIL() << "no exception";
    } catch (const fastgen::Error& error) {
        EXPECT_EQ(error.status(), FASTGEN_ERROR_OUT_OF_MEMORY);
        EXPECT_STREQ(error.what(), "out of memory; sample fewer images per call");
    }
}
