// Manifest parsing and every refusal of a bad bundle (the messages of fastgen/export/manifest.py).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "error.hpp"
#include "manifest.hpp"
#include "sha256.hpp"
#include "test_util.hpp"

using fastgen::kit::Failure;
using fastgen::kit::Manifest;
using fastgen::test::TempDir;
using fastgen::test::write_file;
using nlohmann::json;

namespace {

const char* kAbcSha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

// A bundle directory with one site graph whose hash is right, and its manifest as JSON (written by write()).
struct BundleFixture {
    TempDir dir;
    json manifest;

    BundleFixture() {
        write_file(dir.path() / "level_1.onnx", "abc");
        write_file(dir.path() / "program.json", R"({"format": "fastgen-program"})");
        manifest = {{"format", "fastgen-bundle"},
                    {"format_version", 2},
                    {"family", "udpm"},
                    {"model", json::object()},
                    {"constants", json::object()},
                    {"precision", "fp32"},
                    {"batch", {{"min", 1}, {"opt", 2}, {"max", 4}}},
                    {"sites",
                     {{{"name", "level_1"},
                       {"file", "level_1.onnx"},
                       {"inputs", {{{"name", "x"}, {"shape", {3, 8, 8}}, {"dtype", "float32"}, {"max_value", 1.0}}}},
                       {"output", {{"name", "x_hat"}, {"shape", {3, 16, 16}}, {"dtype", "float32"}, {"max_value", 1.0}}},
                       {"engine", nullptr}}}},
                    {"source", json::object()},
                    {"onnx", json::object()},
                    {"fastgen_version", "0.1.0"},
                    {"files", {{"level_1.onnx", kAbcSha256},
                               {"program.json", fastgen::kit::sha256_file((dir.path() / "program.json").string())}}},
                    {"program", "program.json"}};
    }
    void write() const { write_file(dir.path() / "manifest.json", manifest.dump()); }
    // The message read_manifest fails with (empty when it succeeds).
    std::string refusal() const {
        write();
        try {
            fastgen::kit::read_manifest(dir.str());
        } catch (const Failure& failure) {
            EXPECT_EQ(failure.status, FASTGEN_ERROR_BUNDLE);
            return failure.what();
        }
        return "";
    }
};

}  // namespace

TEST(Sha256, KnownAnswer) {
    TempDir dir;
    write_file(dir.path() / "abc", "abc");
    EXPECT_EQ(fastgen::kit::sha256_file((dir.path() / "abc").string()), kAbcSha256);
    write_file(dir.path() / "empty", "");
    EXPECT_EQ(fastgen::kit::sha256_file((dir.path() / "empty").string()),
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Manifest, ReadsAValidBundle) {
    BundleFixture bundle;
    bundle.write();
    const Manifest manifest = fastgen::kit::read_manifest(bundle.dir.str() + "/");
    EXPECT_EQ(manifest.directory, bundle.dir.str());
    EXPECT_EQ(manifest.family, "udpm");
    EXPECT_EQ(manifest.batch.max, 4);
    ASSERT_EQ(manifest.sites.size(), 1u);
    EXPECT_EQ(manifest.site("level_1").output.shape, (std::vector<std::int64_t>{3, 16, 16}));
    EXPECT_EQ(manifest.site("level_1").inputs.at(0).dtype, "float32");
    EXPECT_FALSE(manifest.sites[0].engine.has_value());
    EXPECT_EQ(manifest.program, "program.json");
    EXPECT_EQ(fastgen::kit::read_program_json(manifest)["format"], "fastgen-program");
    EXPECT_THROW(manifest.site("level_9"), Failure);
}

TEST(Manifest, RefusesADirectoryWithoutManifest) {
    TempDir dir;
    try {
        fastgen::kit::read_manifest(dir.str());
        FAIL() << "no refusal";
    } catch (const Failure& failure) {
        EXPECT_EQ(std::string(failure.what()),
                  dir.str() + " is not a bundle (no manifest.json); make one with `fastgen export CHECKPOINT " + dir.str() + "`");
    }
}

TEST(Manifest, RefusesBadJson) {
    BundleFixture bundle;
    write_file(bundle.dir.path() / "manifest.json", "{not json");
    EXPECT_THROW(fastgen::kit::read_manifest(bundle.dir.str()), Failure);
    write_file(bundle.dir.path() / "manifest.json", "[1, 2]");
    try {
        fastgen::kit::read_manifest(bundle.dir.str());
        FAIL() << "no refusal";
    } catch (const Failure& failure) {
        EXPECT_NE(std::string(failure.what()).find("does not hold a JSON object; re-export the bundle"), std::string::npos);
    }
}

TEST(Manifest, RefusesOtherFormats) {
    BundleFixture bundle;
    bundle.manifest["format"] = "zip";
    EXPECT_NE(bundle.refusal().find("manifest format is 'zip', not 'fastgen-bundle': not a fastgen bundle"), std::string::npos);
}

TEST(Manifest, RefusesUnknownVersionsNamingTheFileAndTheFix) {
    BundleFixture bundle;
    for (const json& version : {json(1), json(3), json("2"), json()}) {
        bundle.manifest["format_version"] = version;
        const std::string message = bundle.refusal();
        EXPECT_NE(message.find("manifest.json: bundle format version"), std::string::npos) << message;
        EXPECT_NE(message.find("is not supported (this fastgen reads version 2); re-export the bundle"), std::string::npos) << message;
    }
    bundle.manifest["format_version"] = 1;
    EXPECT_NE(bundle.refusal().find("bundle format version 1 is not supported"), std::string::npos);
}

TEST(Manifest, RefusesMissingFields) {
    BundleFixture bundle;
    bundle.manifest.erase("sites");
    EXPECT_NE(bundle.refusal().find("manifest is malformed (KeyError: 'sites'); re-export the bundle"), std::string::npos);
    BundleFixture other;
    other.manifest["sites"][0]["output"].erase("shape");
    EXPECT_NE(other.refusal().find("KeyError: 'shape'"), std::string::npos);
}

TEST(Manifest, RefusesBadBatchRanges) {
    BundleFixture bundle;
    bundle.manifest["batch"] = {{"min", 4}, {"opt", 2}, {"max", 8}};
    EXPECT_EQ(bundle.refusal(), "batch must be three integers 1 ≤ min ≤ opt ≤ max, got (4, 2, 8)");
}

TEST(Manifest, RefusesSiteAndProgramFilesWithoutHash) {
    BundleFixture bundle;
    bundle.manifest["files"] = json::object();
    EXPECT_EQ(bundle.refusal(),
              "bundle " + bundle.dir.str() + ": manifest lists no hash for level_1.onnx, program.json; re-export the bundle");
}

TEST(Manifest, RefusesPathsOutOfTheBundle) {
    for (const std::string name : {"../level_1.onnx", "/etc/passwd", "sub/level_1.onnx", ".."}) {
        BundleFixture bundle;
        bundle.manifest["files"][name] = kAbcSha256;
        EXPECT_EQ(bundle.refusal(),
                  "bundle " + bundle.dir.str() + " names '" + name + "', which is not a file of it; it cannot be trusted: re-create it");
    }
}

TEST(Manifest, RefusesSymbolicLinks) {
    BundleFixture bundle;
    TempDir elsewhere;
    write_file(elsewhere.path() / "graph", "abc");
    std::filesystem::remove(bundle.dir.path() / "level_1.onnx");
    std::filesystem::create_symlink(elsewhere.path() / "graph", bundle.dir.path() / "level_1.onnx");
    EXPECT_EQ(bundle.refusal(),
              "bundle " + bundle.dir.str() + ": level_1.onnx is a link that leads outside it; replace it with the file itself");
}

TEST(Manifest, RefusesMissingFiles) {
    BundleFixture bundle;
    std::filesystem::remove(bundle.dir.path() / "level_1.onnx");
    EXPECT_EQ(bundle.refusal(), "bundle " + bundle.dir.str() + " is missing level_1.onnx; copy the whole folder again or re-create it");
}

TEST(Manifest, RefusesAlteredFiles) {
    BundleFixture bundle;
    write_file(bundle.dir.path() / "level_1.onnx", "abd");
    EXPECT_EQ(bundle.refusal(), "bundle " + bundle.dir.str() +
                                    ": level_1.onnx does not match its SHA-256 in manifest.json (altered or truncated); copy the whole "
                                    "bundle again or re-export it");
}

TEST(Manifest, SkipsHashesWithoutVerify) {
    BundleFixture bundle;
    write_file(bundle.dir.path() / "level_1.onnx", "abd");
    bundle.write();
    EXPECT_NO_THROW(fastgen::kit::read_manifest(bundle.dir.str(), /*verify=*/false));
}

TEST(Manifest, ReadsEngineRecords) {
    BundleFixture bundle;
    write_file(bundle.dir.path() / "level_1.plan", "abc");
    bundle.manifest["files"]["level_1.plan"] = kAbcSha256;
    bundle.manifest["sites"][0]["engine"] = {{"file", "level_1.plan"}, {"flavour", "tensorrt_rtx"}, {"version", "1.7"},
                                             {"compute_capabilities", {"8.6", "12.0"}}, {"profile", {{"min", 1}, {"opt", 2}, {"max", 8}}},
                                             {"optimization_level", 3}, {"build_seconds", 1.5}, {"timing_cache", nullptr}};
    bundle.write();
    const Manifest manifest = fastgen::kit::read_manifest(bundle.dir.str());
    ASSERT_TRUE(manifest.sites[0].engine.has_value());
    EXPECT_EQ(manifest.sites[0].engine->profile.max, 8);
    EXPECT_FALSE(manifest.sites[0].engine->profile.contains(9));
    EXPECT_EQ(manifest.sites[0].engine->compute_capabilities.at(1), "12.0");
}

TEST(Manifest, EngineProfilesLimitTheBatch) {
    BundleFixture bundle;
    bundle.write();
    Manifest manifest = fastgen::kit::read_manifest(bundle.dir.str());
    EXPECT_NO_THROW(fastgen::kit::check_engine_batch(manifest, 4));
    try {
        fastgen::kit::check_engine_batch(manifest, 5);
        FAIL() << "no refusal";
    } catch (const Failure& failure) {
        EXPECT_EQ(failure.status, FASTGEN_ERROR_ARGUMENT);
        EXPECT_EQ(std::string(failure.what()), "batch 5 is outside the engine profile 1 … 4 of site level_1; sample in batches within it, "
                                               "or re-export with --batch MIN,OPT,MAX covering it");
    }
    manifest.sites[0].engine = fastgen::kit::EngineRecord{"level_1.plan", "tensorrt", "10.0", {"9.0"}, {2, 2, 2}};
    EXPECT_THROW(fastgen::kit::check_engine_batch(manifest, 1), Failure);
    EXPECT_NO_THROW(fastgen::kit::check_engine_batch(manifest, 2));
}

// Issue 20, class 3: JSON nested deeper than 64 levels or larger than 256 MiB is refused before anything recursive
// (the parser, a copy, a dump) meets it — manifest and program, the messages of fastgen/schema.py's load_json.
TEST(Manifest, RefusesDeeplyNestedOrHugeJson) {
    const std::string deep = std::string(300000, '[') + std::string(300000, ']');
    struct Case {
        std::string file, text, expected;  // expected: the message's end after the file's path
    };
    const std::vector<Case> cases{
        {"manifest.json", "{\"model\": " + deep + "}", " (not readable JSON) nests 300001 levels deep, more than the 64 a fastgen JSON file may; re-create it"},
        {"manifest.json", deep, " (not readable JSON) nests 300000 levels deep, more than the 64 a fastgen JSON file may; re-create it"},
        {"program.json", deep, ": program nests 300000 levels deep, more than the 64 a fastgen JSON file may; re-create it"},
        {"program.json", "{\"ops\": [\"[[[[\"], \"x\": \"]]]]\"}", ""},  // brackets inside strings do not nest
    };
    for (const Case& c : cases) {
        BundleFixture bundle;
        bundle.write();
        write_file(bundle.dir.path() / c.file, c.text);
        const std::string path = (bundle.dir.path() / c.file).string();
        try {
            fastgen::kit::read_program_json(fastgen::kit::read_manifest(bundle.dir.str(), /*verify=*/false));
            EXPECT_EQ(c.expected, "") << c.file;
        } catch (const Failure& failure) {
            EXPECT_EQ(failure.status, FASTGEN_ERROR_BUNDLE);
            EXPECT_EQ(failure.what(), path + c.expected);
        }
    }
    for (const std::string file : {"manifest.json", "program.json"}) {  // sparse files: the size is refused before reading
        BundleFixture bundle;
        bundle.write();
        std::filesystem::resize_file(bundle.dir.path() / file, (std::uintmax_t{257} << 20));
        const std::string what = (bundle.dir.path() / file).string() + (file == "program.json" ? ": program" : " (not readable JSON)");
        try {
            fastgen::kit::read_program_json(fastgen::kit::read_manifest(bundle.dir.str(), /*verify=*/false));
            ADD_FAILURE() << "no refusal";
        } catch (const Failure& failure) {
            EXPECT_EQ(failure.what(), what + " is 257 MiB, more than the 256 MiB a fastgen JSON file may have; re-create it");
        }
    }
}

// Issue 20, class 7: every enum of a manifest holds a known value (int8: QDQ graphs, float32 in and out).
TEST(Manifest, RefusesUnknownEnumValues) {
    const std::string fix = ", which this fastgen does not know; it must be one of ";
    const std::vector<std::pair<std::function<void(json&)>, std::string>> cases{
        {[](json& m) { m["precision"] = "int8"; }, ""},
        {[](json& m) { m["precision"] = "bf16"; }, ""},
        {[](json& m) { m["precision"] = "fp8"; }, "manifest.precision is 'fp8'" + fix + "fp32, fp16, bf16, int8: re-export the bundle"},
        {[](json& m) { m["sites"][0]["inputs"][0]["dtype"] = "float64"; },
         "manifest.sites[0].inputs[0].dtype is 'float64'" + fix + "float32, float16, bfloat16: re-export the bundle"},
        {[](json& m) { m["sites"][0]["output"]["dtype"] = "int64"; },
         "manifest.sites[0].output.dtype is 'int64'" + fix + "float32, float16, bfloat16: re-export the bundle"},
        {[](json& m) {
             m["sites"][0]["engine"] = {{"file", "level_1.onnx"}, {"flavour", "onnx"}, {"version", "1"}, {"compute_capabilities", json::array()},
                                        {"profile", {{"min", 1}, {"opt", 1}, {"max", 1}}}};
         },
         "manifest.sites[0].engine.flavour is 'onnx'" + fix + "tensorrt, tensorrt_rtx: re-export the bundle"},
        {[](json& m) { m["normalization"] = {{"layout", "NHWC"}}; },
         "manifest.normalization is {'layout': 'NHWC'}; every runtime maps images as {'layout': 'NCHW', 'range': [-1.0, 1.0], 'to_uint8': "
         "'clamp(round((x + 1) * 127.5), 0, 255)'}: re-export the bundle"},
    };
    for (const auto& [change, expected] : cases) {
        BundleFixture bundle;
        change(bundle.manifest);
        EXPECT_EQ(bundle.refusal(), expected);
    }
}

// Issue 20, class 6: without verify the kit skips hashing only — never the stay-inside-the-bundle rule.
TEST(Manifest, KeepsFilesInsideTheBundleWithoutVerify) {
    TempDir outside;
    write_file(outside.path() / "program.json", "{}");
    const std::vector<std::pair<std::function<void(BundleFixture&)>, std::string>> cases{
        {[](BundleFixture& b) { b.manifest["program"] = "../program.json"; }, " names '../program.json', which is not a file of it; it cannot be trusted: re-create it"},
        {[&](BundleFixture& b) { b.manifest["program"] = (outside.path() / "program.json").string(); },
         " names '" + (outside.path() / "program.json").string() + "', which is not a file of it; it cannot be trusted: re-create it"},
        {[](BundleFixture& b) { b.manifest["sites"][0]["file"] = "../level_1.onnx"; }, " names '../level_1.onnx', which is not a file of it; it cannot be trusted: re-create it"},
        {[&](BundleFixture& b) {
             std::filesystem::remove(b.dir.path() / "program.json");
             std::filesystem::create_symlink(outside.path() / "program.json", b.dir.path() / "program.json");
         },
         ": program.json is a link that leads outside it; replace it with the file itself"},
        {[](BundleFixture& b) { std::filesystem::remove(b.dir.path() / "level_1.onnx"); },
         " is missing level_1.onnx; copy the whole folder again or re-create it"},
    };
    for (const auto& [damage, expected] : cases) {
        BundleFixture bundle;
        damage(bundle);
        bundle.write();
        try {
            fastgen::kit::read_manifest(bundle.dir.str(), /*verify=*/false);
            ADD_FAILURE() << "no refusal: " << expected;
        } catch (const Failure& failure) {
            EXPECT_EQ(failure.what(), "bundle " + bundle.dir.str() + expected);
        }
    }
}
