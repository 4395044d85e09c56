// fastgen-cpp-sample's argument parser: one strict unsigned parser for seeds and counts (no wrap, no sign, no space).
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>

#include <filesystem>
#include <stdexcept>
#include <vector>

#include "arguments.hpp"
#include "outputs.hpp"
#include "test_util.hpp"

namespace {

struct Case {
    const char* text;
    std::uint64_t largest;
    std::optional<std::uint64_t> expected;
};

class ParseUnsigned : public testing::TestWithParam<Case> {};

TEST_P(ParseUnsigned, TakesDigitsInRangeOnly) {
    const Case& c = GetParam();
    EXPECT_EQ(fastgen::app::parse_unsigned(c.text, c.largest), c.expected) << "'" << c.text << "'";
}

INSTANTIATE_TEST_SUITE_P(Seeds, ParseUnsigned,
                         testing::Values(Case{"0", UINT64_MAX, 0}, Case{"42", UINT64_MAX, 42},
                                         Case{"18446744073709551615", UINT64_MAX, UINT64_MAX},   // 2^64 − 1
                                         Case{"18446744073709551616", UINT64_MAX, std::nullopt},  // 2^64 wrapped before
                                         Case{"99999999999999999999", UINT64_MAX, std::nullopt},
                                         Case{"000000000000000000001", UINT64_MAX, std::nullopt},  // 21 characters
                                         Case{" -1", UINT64_MAX, std::nullopt},                    // strtoull: 2^64 − 1
                                         Case{"-1", UINT64_MAX, std::nullopt}, Case{"+1", UINT64_MAX, std::nullopt},
                                         Case{" 1", UINT64_MAX, std::nullopt}, Case{"1 ", UINT64_MAX, std::nullopt},
                                         Case{"0x10", UINT64_MAX, std::nullopt}, Case{"1e3", UINT64_MAX, std::nullopt},
                                         Case{"", UINT64_MAX, std::nullopt}));
INSTANTIATE_TEST_SUITE_P(Counts, ParseUnsigned,
                         testing::Values(Case{"9223372036854775807", INT64_MAX, INT64_MAX}, Case{"9223372036854775808", INT64_MAX, std::nullopt},
                                         Case{"2147483648", INT32_MAX, std::nullopt}, Case{"16", INT32_MAX, 16}));

// The output guard (issue 20, class 4): fastgen/outputs.py's rules, checked before any work.
TEST(OutputGuard, RefusesWhatWouldHarmInputsOrBundles) {
    fastgen::test::TempDir dir;
    const std::filesystem::path root = std::filesystem::weakly_canonical(dir.path()), bundle = root / "bundle";
    std::filesystem::create_directories(bundle);
    fastgen::test::write_file(bundle / "manifest.json", "{}");
    fastgen::test::write_file(bundle / "level_1.onnx", "graph");
    fastgen::test::write_file(root / "notes.png", "not a png");
    fastgen::test::write_file(root / "old.png", "\x89PNG\r\n\x1a\nold");
    fastgen::test::write_file(root / "file", "x");
    std::filesystem::create_directories(root / "folder.png");
    const std::string r = root.string(), b = bundle.string();
    struct Case {
        std::string path;
        const fastgen::app::OutputKind& kind;
        std::string expected;  // "": allowed
    };
    const std::vector<Case> cases{
        {r + "/grid.png", fastgen::app::kPng, ""},
        {r + "/old.png", fastgen::app::kPng, ""},  // a PNG replaces a PNG
        {r + "/raw.npy", fastgen::app::kNpy, ""},
        {r + "/GRID.PNG", fastgen::app::kPng, ""},
        {b + "/manifest.json", fastgen::app::kPng, b + "/manifest.json is inside the bundle " + b + "; write it somewhere else"},
        {b + "/level_1.onnx", fastgen::app::kNpy, b + "/level_1.onnx is inside the bundle " + b + "; write it somewhere else"},
        {b + "/grid.png", fastgen::app::kPng, b + "/grid.png is inside the bundle " + b + "; write it somewhere else"},
        {b, fastgen::app::kPng, b + " would replace this command's own input " + b + "; choose another output path"},
        {r, fastgen::app::kPng, r + " would replace this command's own input " + b + "; choose another output path"},
        {r + "/grid.jpg", fastgen::app::kPng, r + "/grid.jpg: a PNG image is written to a file ending in .png; name it so"},
        {r + "/raw.png", fastgen::app::kNpy, r + "/raw.png: a NumPy .npy file is written to a file ending in .npy; name it so"},
        {r + "/missing/grid.png", fastgen::app::kPng, r + "/missing/grid.png: its folder " + r + "/missing does not exist; create it first"},
        {r + "/file/grid.png", fastgen::app::kPng, r + "/file/grid.png lies below " + r + "/file, which is a file, not a folder; choose another path"},
        {r + "/folder.png", fastgen::app::kPng, r + "/folder.png is a folder; give a file name for the PNG image, e.g. " + r + "/folder.png/out.png"},
        {r + "/notes.png", fastgen::app::kPng, r + "/notes.png exists and is not a PNG image: refusing to overwrite it; choose another file name"},
    };
    for (const Case& c : cases) {
        try {
            fastgen::app::check_output(c.path, c.kind, {b});
            EXPECT_EQ(c.expected, "") << c.path;
        } catch (const std::runtime_error& error) {
            EXPECT_EQ(error.what(), c.expected);
        }
    }
}

// Outputs appear all together or not at all, and no staging file is left behind.
TEST(OutputGuard, WritesAllOutputsOrNone) {
    fastgen::test::TempDir dir;
    const std::filesystem::path a = dir.path() / "a.png", b = dir.path() / "b.npy";
    {
        fastgen::app::StagedOutputs outputs;
        outputs.stage(a.string(), [](const std::string& path) { fastgen::test::write_file(path, "first"); });
        EXPECT_THROW(outputs.stage(b.string(), [](const std::string&) { throw std::runtime_error("disk full"); }), std::runtime_error);
    }
    EXPECT_TRUE(std::filesystem::is_empty(dir.path()));  // neither output, no staging file
    fastgen::app::StagedOutputs outputs;
    outputs.stage(a.string(), [](const std::string& path) { fastgen::test::write_file(path, "first"); });
    outputs.stage(b.string(), [](const std::string& path) { fastgen::test::write_file(path, "second"); });
    EXPECT_FALSE(std::filesystem::exists(a));  // nothing in place before commit
    outputs.commit();
    EXPECT_TRUE(std::filesystem::exists(a) && std::filesystem::exists(b));
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator()), 2);
}

}  // namespace
