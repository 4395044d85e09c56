// A bundle's manifest.json, read and checked exactly as fastgen/export/manifest.py does (same refusals, same
// messages), plus what Python cannot meet: symlinks and paths that leave the bundle directory.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace fastgen::kit {

inline constexpr const char* kFormat = "fastgen-bundle";
inline constexpr int kFormatVersion = 2;  // 2: the sampling program (program.json)
inline constexpr const char* kManifestFile = "manifest.json";
inline constexpr const char* kProgramFile = "program.json";  // the default name of the program file

struct BatchRange {
    std::int64_t min = 1, opt = 1, max = 1;
    bool contains(std::int64_t batch) const { return min <= batch && batch <= max; }
};

// Elements one image of a site's tensor may have (as a program buffer: program.hpp's kMaxBufferElements).
inline constexpr std::int64_t kMaxShapeElements = std::int64_t{1} << 31;

struct TensorSpec {
    std::string name;
    std::vector<std::int64_t> shape;  // without the batch dimension
    std::string dtype;
    double max_value = 1.0;  // a timestep input's largest value (T − 1)
};

struct EngineRecord {
    std::string file, flavour, version;
    std::vector<std::string> compute_capabilities;
    BatchRange profile;
};

struct SiteRecord {
    std::string name, file;
    std::vector<TensorSpec> inputs;
    TensorSpec output;
    std::optional<EngineRecord> engine;
};

struct Manifest {
    std::string directory;  // as given, without trailing slashes (Python's str(Path(directory)))
    std::string family, precision;
    BatchRange batch;
    std::vector<SiteRecord> sites;
    std::map<std::string, std::string> files;  // file name → SHA-256
    std::string program;                       // the file holding the sampling program (export/PROGRAM.md)
    nlohmann::json model, constants;

    const SiteRecord& site(const std::string& name) const;
    std::string path_of(const std::string& file) const { return directory + "/" + file; }
};

// The one JSON reader of the kit (fastgen/schema.py's load_json: the same limits and messages): refuses text larger
// than kMaxJsonBytes or nesting deeper than kMaxJsonDepth before parsing, so nothing recursive meets it; `what` names
// it in messages. Returns a discarded value for text that is not JSON (the caller says what that means).
inline constexpr int kMaxJsonDepth = 64;
inline constexpr std::size_t kMaxJsonBytes = std::size_t{256} << 20;
nlohmann::json parse_json(const std::string& text, const std::string& what);
// The enums a manifest may hold (fastgen/export/manifest.py's ENUMS); int8: QDQ-quantised graphs, float32 in and out.
inline const std::vector<std::string> kPrecisions{"fp32", "fp16", "bf16", "int8"}, kFlavours{"tensorrt", "tensorrt_rtx"},
    kDtypes{"float32", "float16", "bfloat16"};

// Parses manifest JSON text of the bundle `directory` (`source` names it in messages).
Manifest parse_manifest(const std::string& directory, const std::string& source, const std::string& text);
// Reads DIRECTORY/manifest.json. Every file it names or lists must be a plain file of the bundle, with or without
// `verify`; `verify` adds the SHA-256 of each (verify_files).
Manifest read_manifest(const std::string& directory, bool verify = true);
void verify_files(const Manifest& manifest);
// Engines take only the batch sizes of their optimisation profile (fastgen.runtime.check_site_inputs's refusal):
// throws Failure(ARGUMENT) when `batch` is outside a site engine's profile (sites without engines: the bundle's range).
void check_engine_batch(const Manifest& manifest, std::int64_t batch);
// The bundle's sampling program as JSON (its file was hashed by verify_files).
nlohmann::json read_program_json(const Manifest& manifest);

}  // namespace fastgen::kit
