// The program interpreter: every op against the Python reference's fixtures (made at test time by
// make_fixtures.py over the same fake sites), and the parser's refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "error.hpp"
#include "fake_sites.hpp"
#include "program.hpp"

using fastgen::kit::Failure;
using fastgen::kit::Program;
using fastgen::kit::Rows;
using fastgen::kit::Sites;
using nlohmann::json;

using fastgen::test::fake_sites;
using fastgen::test::shape_of;

namespace {

std::filesystem::path fixture_dir() {
    const char* dir = std::getenv("FASTGEN_FIXTURE_DIR");
    return dir ? dir : "";
}

json read_json(const std::filesystem::path& path) {
    std::ifstream stream(path);
    return json::parse(stream);
}

// A small valid program: noise, upsample, renoise.
json small_program() {
    return {{"format", "fastgen-program"},
            {"version", 1},
            {"buffers", {{"x", {1, 2, 2}}, {"y", {1, 4, 4}}}},
            {"ops",
             {{{"op", "noise"}, {"out", "x"}, {"scale", 1.0}, {"filter", nullptr}},
              {{"op", "upsample"}, {"x", "x"}, {"out", "y"}},
              {{"op", "renoise"}, {"x", "y"}, {"out", "y"}, {"signal", 0.5}, {"noise_scale", 0.5}}}},
            {"output", "y"}};
}

std::string refusal(const json& program) {
    try {
        fastgen::kit::parse_program(program, "bundle/manifest.json", program.is_object() ? fake_sites(program) : Sites());
    } catch (const Failure& failure) {
        EXPECT_EQ(failure.status, FASTGEN_ERROR_BUNDLE);
        return failure.what();
    }
    return "";
}

}  // namespace

class PythonFixture : public testing::TestWithParam<const char*> {};

TEST_P(PythonFixture, EqualsThePythonInterpreter) {
    const std::filesystem::path dir = fixture_dir();
    if (dir.empty()) GTEST_SKIP() << "FASTGEN_FIXTURE_DIR is not set (ctest runs make_fixtures.py first)";
    const json fixture = read_json(dir / (std::string(GetParam()) + ".json"));
    const json& data = fixture["program"];
    const Sites sites = fake_sites(data);
    const Program program = fastgen::kit::parse_program(data, GetParam(), sites);
    const std::int64_t batch = fixture["batch"];
    std::int64_t count = batch;
    for (std::int64_t size : fastgen::kit::output_shape(program)) count *= size;
    std::vector<float> expected(static_cast<std::size_t>(count)), got(expected.size());
    std::ifstream raw(dir / (std::string(GetParam()) + ".f32"), std::ios::binary);
    raw.read(reinterpret_cast<char*>(expected.data()), static_cast<std::streamsize>(expected.size() * sizeof(float)));
    ASSERT_TRUE(raw) << "fixture output is shorter than the program's output";
    fastgen::kit::run_program(program, sites, Rows::of_seed(fixture["seed"].get<std::uint64_t>(), batch), got.data());
    double worst = 0.0, scale = 0.0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        worst = std::max(worst, std::abs(static_cast<double>(got[i]) - expected[i]));
        scale = std::max(scale, std::abs(static_cast<double>(expected[i])));
    }
    EXPECT_GT(scale, 0.1) << "the fixture's output is ~0: the comparison would prove little";
    EXPECT_LE(worst, 1e-5 * std::max(1.0, scale)) << GetParam() << ": max abs difference " << worst << " (output scale " << scale << ")";
}

INSTANTIATE_TEST_SUITE_P(Ops, PythonFixture, fastgen::test::fixture_programs());

// Per-row seeds: a batch mixing (seed, image index) rows gives, row for row, exactly the images of one-seed batches.
class RowsFixture : public testing::TestWithParam<const char*> {};

TEST_P(RowsFixture, MixedRowsEqualTheSingleSeedSamples) {
    const std::filesystem::path dir = fixture_dir();
    if (dir.empty()) GTEST_SKIP() << "FASTGEN_FIXTURE_DIR is not set (ctest runs make_fixtures.py first)";
    const json data = read_json(dir / (std::string(GetParam()) + ".json"))["program"];
    const Sites sites = fake_sites(data);
    const Program program = fastgen::kit::parse_program(data, GetParam(), sites);
    const Rows rows = fastgen::test::mixed_rows();
    std::int64_t per_image = 1;
    for (std::int64_t size : fastgen::kit::output_shape(program)) per_image *= size;
    std::vector<float> mixed(static_cast<std::size_t>(rows.size() * per_image));
    fastgen::kit::run_program(program, sites, rows, mixed.data());
    for (std::int64_t r = 0; r < rows.size(); ++r) {
        const auto n = static_cast<std::int64_t>(rows.indices[r]) + 1;
        std::vector<float> single(static_cast<std::size_t>(n * per_image));
        fastgen::kit::run_program(program, sites, Rows::of_seed(rows.seeds[r], n), single.data());
        const auto image = single.begin() + static_cast<std::ptrdiff_t>((n - 1) * per_image);
        EXPECT_TRUE(std::equal(image, image + per_image, mixed.begin() + r * per_image)) << GetParam() << ": row " << r;
    }
}

INSTANTIATE_TEST_SUITE_P(Ops, RowsFixture, fastgen::test::fixture_programs());

TEST(Program, RefusesRowsItCannotKey) {
    const Sites sites;
    const Program program = fastgen::kit::parse_program(small_program(), "test", sites);  // largest buffer: 16 elements per image
    std::vector<float> out(32);
    const std::uint64_t largest = (UINT64_MAX - 15) / 16;
    auto refusal = [&](const Rows& rows) -> std::string {
        try {
            fastgen::kit::run_program(program, sites, rows, out.data());
        } catch (const Failure& failure) {
            EXPECT_EQ(failure.status, FASTGEN_ERROR_ARGUMENT);
            return failure.what();
        }
        return "";
    };
    EXPECT_EQ(refusal(Rows{{1, 2}, {0, largest}}), "");  // its last element is 2^64 − 1
    EXPECT_EQ(refusal(Rows{{1, 2}, {0, largest + 1}}),
              "row 1: image index " + std::to_string(largest + 1) + " is too large: its noise elements (index × 16 per image) overflow 64 bits; "
              "the largest image index this program takes is " + std::to_string(largest));
    EXPECT_EQ(refusal(Rows{{1, 2}, {UINT64_MAX, 0}}).rfind("row 0: image index 18446744073709551615 is too large", 0), 0u);
    EXPECT_EQ(refusal(Rows{{1, 2}, {0}}), "the rows have 2 seeds but 1 image indices");
    EXPECT_EQ(refusal(Rows{}), "the number of images must be ≥ 1, got 0");
}

TEST(Program, SameSeedSameImagesAndBatchPrefixesAgree) {
    const json data = small_program();
    const Sites sites;
    const Program program = fastgen::kit::parse_program(data, "test", sites);
    std::vector<float> one(16), three(48), again(48), other(48);
    fastgen::kit::run_program(program, sites, Rows::of_seed(7, 1), one.data());
    fastgen::kit::run_program(program, sites, Rows::of_seed(7, 3), three.data());
    fastgen::kit::run_program(program, sites, Rows::of_seed(7, 3), again.data());
    fastgen::kit::run_program(program, sites, Rows::of_seed(8, 3), other.data());
    EXPECT_EQ(three, again);
    EXPECT_NE(three, other);
    EXPECT_TRUE(std::equal(one.begin(), one.end(), three.begin()));  // image b does not depend on the batch size
}

TEST(Program, RefusesWhatItDoesNotKnow) {
    json program = small_program();
    program["version"] = 2;
    EXPECT_EQ(refusal(program), "bundle/manifest.json: the program's version 2 is newer than this kit reads (1); update the fastgen kit, "
                                "or re-export with this fastgen");
    program = small_program();
    program["ops"][1]["op"] = "sharpen";
    EXPECT_NE(refusal(program).find("op 1 (sharpen) is of unknown kind \"sharpen\""), std::string::npos);
    program = small_program();
    program["ops"][2]["gain"] = 2;
    EXPECT_EQ(refusal(program), "bundle/manifest.json: op 2 (renoise) has an unknown field \"gain\"; re-export the bundle with this fastgen");
    program = small_program();
    program["ops"][0].erase("scale");
    EXPECT_EQ(refusal(program), "bundle/manifest.json: op 0 (noise) has no field \"scale\"; re-export the bundle with this fastgen");
    program = small_program();
    program["extra"] = 1;
    EXPECT_NE(refusal(program).find("the program has an unknown field \"extra\""), std::string::npos);
    EXPECT_NE(refusal(json()).find("has no sampling program; re-export the bundle"), std::string::npos);
}

TEST(Program, RefusesShapesThatDoNotFit) {
    json program = small_program();
    program["buffers"]["y"] = {1, 4, 5};
    EXPECT_NE(refusal(program).find("op 1 (upsample) out is [1, 4, 5], expected [1, 4, 4]"), std::string::npos);
    program = small_program();
    program["ops"][0]["filter"] = {{"basis", "fourier"}, {"values", {{1.0, 1.0}}}};  // [1][2], expected [2][2]
    EXPECT_NE(refusal(program).find("field \"values\" must be a [2][2] array"), std::string::npos);
    program = small_program();
    program["ops"][1]["x"] = "y";
    EXPECT_NE(refusal(program).find("reads buffer \"y\" before any op wrote it"), std::string::npos);
    program = small_program();
    program["ops"][1]["x"] = "nowhere";
    EXPECT_NE(refusal(program).find("names buffer \"nowhere\", which the program does not declare"), std::string::npos);
}

TEST(Program, RefusesSitesTheBundleDoesNotHave) {
    json program = small_program();
    program["ops"][1] = {{"op", "call"}, {"site", "level_1"}, {"x", "x"}, {"out", "y"}};
    try {
        fastgen::kit::parse_program(program, "m", Sites());
        FAIL() << "no refusal";
    } catch (const Failure& failure) {
        EXPECT_NE(std::string(failure.what()).find("calls site \"level_1\", which the bundle does not have"), std::string::npos);
    }
}

// Issue 20, class 2: every buffer's shape is bounded when it is read (1 to 4 sides, at most 2^31 elements an image, so
// no product of sides overflows int64), and a run's memory is estimated before its first op.
TEST(Program, RefusesBuffersNoSizeFits) {
    const std::string bad = "the program buffer \"y\" must have a shape of 1 to 4 positive integers, at most 2147483648 elements";
    const std::int64_t big = std::int64_t{1} << 40;
    const std::vector<std::pair<json, std::string>> cases{
        {json{big, big, 1}, bad},  // 2^80 elements: overflowed int64 and crashed before
        {json{1, std::int64_t{1} << 31, 2}, bad},
        {json{INT64_MAX, 2, 2}, bad},
        {json::array(), bad},
        {json{1, 1, 1, 1, 1}, bad},
        {json{1, 0, 4}, bad},
        {json{1, -4, 4}, bad},
        {json{1, 4.0, 4}, bad},
    };
    for (const auto& [shape, expected] : cases) {
        json program = small_program();
        program["buffers"]["y"] = shape;
        EXPECT_EQ(refusal(program), "bundle/manifest.json: " + expected + "; re-export the bundle with this fastgen") << shape.dump();
    }
}

TEST(Program, EstimatesMemoryBeforeTheFirstOp) {
    const Sites sites;
    const Program program = fastgen::kit::parse_program(small_program(), "test", sites);
    const std::uint64_t per_image = (4 + 16 + 4 * 16) * sizeof(float);  // the buffers, a chain's copies and the draws
    EXPECT_EQ(fastgen::kit::program_bytes(program, 10), 10 * per_image);
    EXPECT_NO_THROW(fastgen::kit::check_memory(program, 10, 10 * per_image, "memory"));
    try {
        fastgen::kit::check_memory(program, 10, 10 * per_image - 1, "memory");
        FAIL() << "no refusal";
    } catch (const Failure& failure) {
        EXPECT_EQ(failure.status, FASTGEN_ERROR_OUT_OF_MEMORY);
        EXPECT_STREQ(failure.what(), "sampling 10 images needs about 1 MiB of memory, more than the 1 MiB available; sample fewer images per call");
    }
    // A real run of images of 2^31 elements (8 GiB each): refused before any buffer is allocated.
    json huge = small_program();
    huge["buffers"] = {{"x", {1, 32768, 65536}}};
    huge["ops"] = {{{"op", "noise"}, {"out", "x"}, {"scale", 1.0}, {"filter", nullptr}}};
    huge["output"] = "x";
    const Program large = fastgen::kit::parse_program(huge, "test", sites);
    try {
        fastgen::kit::run_program(large, sites, Rows::of_seed(1, 1000), nullptr);
        FAIL() << "no refusal";
    } catch (const Failure& failure) {
        EXPECT_EQ(failure.status, FASTGEN_ERROR_OUT_OF_MEMORY);
        EXPECT_EQ(std::string(failure.what()).rfind("sampling 1000 images needs about ", 0), 0u) << failure.what();
    }
}
