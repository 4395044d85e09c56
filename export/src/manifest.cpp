#include "manifest.hpp"

#include <sys/stat.h>

#include <fstream>
#include <set>
#include <sstream>

#include "error.hpp"
#include "sha256.hpp"

namespace fastgen::kit {
namespace {

using nlohmann::json;

// Python's repr() of a JSON value, for messages that quote what the manifest holds.
std::string python_repr(const json& value) {
    if (value.is_null()) return "None";
    if (value.is_boolean()) return value.get<bool>() ? "True" : "False";
    if (value.is_string()) return "'" + value.get<std::string>() + "'";
    return value.dump();
}

// Malformed content: what Python reports as KeyError/TypeError.
struct Malformed {
    std::string what;
};

const json& field(const json& object, const char* key) {
    if (!object.is_object()) throw Malformed{"TypeError: expected an object"};
    const auto found = object.find(key);
    if (found == object.end()) throw Malformed{std::string("KeyError: '") + key + "'"};
    return *found;
}

std::string string_field(const json& object, const char* key) {
    const json& value = field(object, key);
    if (!value.is_string()) throw Malformed{std::string("TypeError: ") + key + " must be a string"};
    return value.get<std::string>();
}

BatchRange batch_range(const json& data) {
    const json &min = field(data, "min"), &opt = field(data, "opt"), &max = field(data, "max");
    const bool integers = min.is_number_integer() && opt.is_number_integer() && max.is_number_integer();
    if (!integers || !(1 <= min.get<std::int64_t>() && min.get<std::int64_t>() <= opt.get<std::int64_t>() &&
                       opt.get<std::int64_t>() <= max.get<std::int64_t>()))
        bundle_error("batch must be three integers 1 ≤ min ≤ opt ≤ max, got (" + python_repr(min) + ", " + python_repr(opt) +
                     ", " + python_repr(max) + ")");
    return {min.get<std::int64_t>(), opt.get<std::int64_t>(), max.get<std::int64_t>()};
}

TensorSpec tensor_spec(const json& data) {
    TensorSpec spec{string_field(data, "name"), {}, string_field(data, "dtype")};
    const json& shape = field(data, "shape");
    if (!shape.is_array()) throw Malformed{"TypeError: shape must be a list"};
    for (const json& size : shape) {
        if (!size.is_number_integer()) throw Malformed{"TypeError: shape entries must be integers"};
        spec.shape.push_back(size.get<std::int64_t>());
    }
    return spec;
}

SiteRecord site_record(const json& data) {
    SiteRecord site{string_field(data, "name"), string_field(data, "file"), {}, tensor_spec(field(data, "output")), {}};
    const json& inputs = field(data, "inputs");
    if (!inputs.is_array()) throw Malformed{"TypeError: inputs must be a list"};
    for (const json& input : inputs) site.inputs.push_back(tensor_spec(input));
    const auto engine = data.find("engine");
    if (engine != data.end() && !engine->is_null()) {
        EngineRecord record{string_field(*engine, "file"), string_field(*engine, "flavour"), string_field(*engine, "version"),
                            {}, batch_range(field(*engine, "profile"))};
        for (const json& capability : field(*engine, "compute_capabilities")) record.compute_capabilities.push_back(capability);
        site.engine = record;
    }
    return site;
}

std::string trimmed(std::string directory) {
    while (directory.size() > 1 && directory.back() == '/') directory.pop_back();
    return directory.empty() ? "." : directory;
}

// Hashes name plain files of the bundle, never paths out of it.
bool plain_file_name(const std::string& name) {
    return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
           name.find('\0') == std::string::npos;
}

}  // namespace

const SiteRecord& Manifest::site(const std::string& name) const {
    std::string names;
    for (const SiteRecord& record : sites) {
        if (record.name == name) return record;
        names += (names.empty() ? "" : ", ") + record.name;
    }
    bundle_error("bundle has no call site '" + name + "'; it has " + names);
}

Manifest parse_manifest(const std::string& directory, const std::string& source, const std::string& text) {
    const json data = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (data.is_discarded()) bundle_error(source + " is not readable JSON (parse error); re-export the bundle");
    if (!data.is_object()) bundle_error(source + " does not hold a JSON object; re-export the bundle");
    const json format = data.contains("format") ? data["format"] : json();
    if (format != kFormat)
        bundle_error(source + ": manifest format is " + python_repr(format) + ", not '" + kFormat + "': not a fastgen bundle");
    const json version = data.contains("format_version") ? data["format_version"] : json();
    if (!(version.is_number_integer() && version.get<std::int64_t>() == kFormatVersion))
        bundle_error(source + ": bundle format version " + python_repr(version) + " is not supported (this fastgen reads version " +
                     std::to_string(kFormatVersion) + "); re-export the bundle with this fastgen, or use the fastgen that wrote it");
    Manifest manifest;
    manifest.directory = trimmed(directory);
    try {
        manifest.family = string_field(data, "family");
        manifest.precision = string_field(data, "precision");
        manifest.batch = batch_range(field(data, "batch"));
        for (const json& site : field(data, "sites")) manifest.sites.push_back(site_record(site));
        const json& files = field(data, "files");
        if (!files.is_object()) throw Malformed{"TypeError: files must be an object"};
        for (const auto& [name, digest] : files.items()) {
            if (!digest.is_string()) throw Malformed{"TypeError: file hashes must be strings"};
            manifest.files[name] = digest.get<std::string>();
        }
        manifest.model = field(data, "model");
        manifest.constants = field(data, "constants");
        manifest.program = data.contains("program") ? string_field(data, "program") : kProgramFile;
    } catch (const Malformed& malformed) {
        bundle_error(source + ": manifest is malformed (" + malformed.what + "); re-export the bundle");
    } catch (const json::exception& error) {
        bundle_error(source + ": manifest is malformed (" + error.what() + "); re-export the bundle");
    }
    return manifest;
}

Manifest read_manifest(const std::string& directory_argument, bool verify) {
    const std::string directory = trimmed(directory_argument);
    const std::string path = directory + "/" + kManifestFile;
    struct stat info {};
    if (stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode))
        bundle_error(directory + " is not a bundle (no " + kManifestFile + "); make one with `fastgen export CHECKPOINT " + directory +
                     "`");
    std::ifstream stream(path, std::ios::binary);
    std::stringstream text;
    text << stream.rdbuf();
    if (!stream) bundle_error(path + " is not readable JSON (cannot read it); re-export the bundle");
    Manifest manifest = parse_manifest(directory, path, text.str());
    if (verify) verify_files(manifest);
    return manifest;
}

void verify_files(const Manifest& manifest) {
    const std::string& directory = manifest.directory;
    std::set<std::string> unlisted;
    if (!manifest.files.count(manifest.program)) unlisted.insert(manifest.program);
    for (const SiteRecord& site : manifest.sites) {
        if (!manifest.files.count(site.file)) unlisted.insert(site.file);
        if (site.engine && !manifest.files.count(site.engine->file)) unlisted.insert(site.engine->file);
    }
    if (!unlisted.empty()) {
        std::string names;
        for (const std::string& name : unlisted) names += (names.empty() ? "" : ", ") + name;
        bundle_error("bundle " + directory + ": manifest lists no hash for " + names + "; re-export the bundle");
    }
    for (const auto& [name, expected] : manifest.files) {
        if (!plain_file_name(name))
            bundle_error("bundle " + directory + " names '" + name + "', which is not a file of it; it cannot be trusted: re-create it");
        const std::string path = manifest.path_of(name);
        struct stat info {};
        if (lstat(path.c_str(), &info) != 0)
            bundle_error("bundle " + directory + " is missing " + name + "; copy the whole folder again or re-create it");
        // A link could point anywhere (and change after the check): bundles hold their files themselves. The messages
        // are Python's (fastgen/integrity.py), word for word.
        if (S_ISLNK(info.st_mode))
            bundle_error("bundle " + directory + ": " + name + " is a link that leads outside it; replace it with the file itself");
        if (!S_ISREG(info.st_mode))
            bundle_error("bundle " + directory + " is missing " + name + "; copy the whole folder again or re-create it");
        if (sha256_file(path) != expected)
            bundle_error("bundle " + directory + ": " + name + " does not match its SHA-256 in " + kManifestFile +
                         " (altered or truncated); copy the whole bundle again or re-export it");
    }
}

void check_engine_batch(const Manifest& manifest, std::int64_t batch) {
    for (const SiteRecord& site : manifest.sites) {
        const BatchRange range = site.engine ? site.engine->profile : manifest.batch;
        if (!range.contains(batch))
            argument_error("batch " + std::to_string(batch) + " is outside the engine profile " + std::to_string(range.min) + " … " +
                           std::to_string(range.max) + " of site " + site.name +
                           "; sample in batches within it, or re-export with --batch MIN,OPT,MAX covering it");
    }
}

json read_program_json(const Manifest& manifest) {
    const std::string path = manifest.path_of(manifest.program);
    std::ifstream stream(path, std::ios::binary);
    std::stringstream text;
    text << stream.rdbuf();
    if (!stream) bundle_error("bundle " + manifest.directory + ": cannot read its program " + manifest.program + "; re-export the bundle");
    const json program = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (program.is_discarded()) bundle_error("program is not valid JSON (" + path + "); re-export the bundle");
    return program;
}

}  // namespace fastgen::kit
