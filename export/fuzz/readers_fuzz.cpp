// libFuzzer target for the kit's readers of untrusted bundles: every input is tried as manifest text
// (parse_manifest), as program JSON (parse_json + parse_program over fixed sites) and through the C API's open path
// (written as a bundle's manifest.json, then as its program.json, opened without verify). A reader may refuse with
// a status; it must never crash, leak, overflow or abort. Built with -DFASTGEN_FUZZ=ON (clang); .ci/run runs it.
#include <fastgen/fastgen.h>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "error.hpp"
#include "manifest.hpp"
#include "program.hpp"

namespace {

using fastgen::kit::Failure;

// Sites shaped as a tiny UDPM bundle's and a denoising site, so programs that call them get past the site checks.
const fastgen::kit::Sites& sites() {
    static const fastgen::kit::Sites fixed = [] {
        fastgen::kit::Sites made;
        const auto none = [](std::int64_t, const std::vector<const float*>&, float*) {};
        made["level_1"] = {{{1, 8, 8}}, {1, 16, 16}, none};
        made["level_2"] = {{{1, 4, 4}}, {1, 8, 8}, none};
        made["model"] = {{{1, 16, 16}, {}}, {1, 16, 16}, none};
        return made;
    }();
    return fixed;
}

// A bundle folder of this process, with a manifest and a program that open (no sites: no ONNX Runtime needed).
const std::string& bundle() {
    // Never destroyed: the atexit cleanup runs after static destructors may have.
    static const std::string* dir = [] {
        std::string pattern = (std::filesystem::temp_directory_path() / "fastgen-fuzz-XXXXXX").string();
        auto* made = new std::string(mkdtemp(pattern.data()));
        std::atexit([] { std::filesystem::remove_all(bundle()); });
        return made;
    }();
    return *dir;
}
const char* kManifest =
    R"({"format": "fastgen-bundle", "format_version": 2, "family": "ddpm", "model": {"image": {"channels": 1, "resolution": 4}},
        "constants": {}, "precision": "fp32", "batch": {"min": 1, "opt": 1, "max": 4}, "sites": [], "files": {}, "program": "program.json"})";
const char* kProgram =
    R"({"format": "fastgen-program", "version": 1, "buffers": {"x": [1, 4, 4]},
        "ops": [{"op": "noise", "out": "x", "scale": 1.0, "filter": null}], "output": "x"})";

void write(const std::string& name, const std::string& text) { std::ofstream(bundle() + "/" + name, std::ios::binary) << text; }

void open_bundle() {
    fastgen_options options;
    fastgen_options_init(&options);
    options.verify = 0;
    fastgen_bundle* opened = nullptr;
    if (fastgen_open(bundle().c_str(), &options, &opened) == FASTGEN_OK) {
        float image[16];
        fastgen_sample(opened, 1, 7, image, 16);
    }
    fastgen_close(opened);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        fastgen::kit::parse_manifest(bundle(), bundle() + "/manifest.json", text);
    } catch (const Failure&) {
    }
    try {
        fastgen::kit::parse_program(fastgen::kit::parse_json(text, "program"), "program.json", sites());
    } catch (const Failure&) {
    }
    write("manifest.json", text);
    write("program.json", kProgram);
    open_bundle();
    write("manifest.json", kManifest);
    write("program.json", text);
    open_bundle();
    return 0;
}
