#include "manifest.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "error.hpp"
#include "sha256.hpp"

namespace fastgen::kit {
namespace {

using nlohmann::json;

// A manifest names plain files of the bundle, never paths out of it.
bool plain_file_name(const std::string& name) {
    return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
           name.find('\0') == std::string::npos;
}

// Python's repr() of a JSON value, for messages that quote what the manifest holds (nesting is bounded by parse_json).
std::string python_repr(const json& value) {
    if (value.is_null()) return "None";
    if (value.is_boolean()) return value.get<bool>() ? "True" : "False";
    if (value.is_string()) return "'" + value.get<std::string>() + "'";
    std::string text;
    if (value.is_array()) {
        for (const json& item : value) text += (text.empty() ? "" : ", ") + python_repr(item);
        return "[" + text + "]";
    }
    if (value.is_object()) {
        for (const auto& item : value.items()) text += (text.empty() ? "'" : ", '") + item.key() + "': " + python_repr(item.value());
        return "{" + text + "}";
    }
    return value.dump();
}

// The deepest bracket nesting of JSON text outside strings: one pass, no recursion (schema.py's _nesting).
int nesting(const std::string& text) {
    int depth = 0, deepest = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            deepest = std::max(deepest, ++depth);
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return deepest;
}

void check_json_size(std::uintmax_t bytes, const std::string& what) {
    if (bytes <= kMaxJsonBytes) return;
    char mib[32];
    std::snprintf(mib, sizeof(mib), "%.0f", static_cast<double>(bytes) / (1 << 20));
    bundle_error(what + " is " + mib + " MiB, more than the " + std::to_string(kMaxJsonBytes >> 20) +
                 " MiB a fastgen JSON file may have; re-create it");
}

// The text of a JSON file, its size checked before it is read; empty optional when it cannot be read.
std::optional<std::string> read_json_file(const std::string& path, const std::string& what) {
    struct stat info {};
    if (stat(path.c_str(), &info) == 0) check_json_size(static_cast<std::uintmax_t>(info.st_size), what);
    std::ifstream stream(path, std::ios::binary);
    std::stringstream text;
    text << stream.rdbuf();
    if (!stream) return std::nullopt;
    return text.str();
}

void check_enum(const std::string& place, const std::string& value, const std::vector<std::string>& known) {
    for (const std::string& name : known)
        if (value == name) return;
    std::string names;
    for (const std::string& name : known) names += (names.empty() ? "" : ", ") + name;
    bundle_error(place + " is '" + value + "', which this fastgen does not know; it must be one of " + names + ": re-export the bundle");
}

// Every enum of the manifest holds a known value, and the normalisation is the one every runtime applies (manifest.py).
void check_enums(const Manifest& manifest, const json& data) {
    check_enum("manifest.precision", manifest.precision, kPrecisions);
    for (std::size_t index = 0; index < manifest.sites.size(); ++index) {
        const SiteRecord& site = manifest.sites[index];
        const std::string where = "manifest.sites[" + std::to_string(index) + "]";
        for (std::size_t i = 0; i < site.inputs.size(); ++i) check_enum(where + ".inputs[" + std::to_string(i) + "].dtype", site.inputs[i].dtype, kDtypes);
        check_enum(where + ".output.dtype", site.output.dtype, kDtypes);
        if (site.engine) check_enum(where + ".engine.flavour", site.engine->flavour, kFlavours);
    }
    const json normalization = {{"layout", "NCHW"}, {"range", {-1.0, 1.0}}, {"to_uint8", "clamp(round((x + 1) * 127.5), 0, 255)"}};
    const auto found = data.find("normalization");
    if (found != data.end() && *found != normalization)
        bundle_error("manifest.normalization is " + python_repr(*found) + "; every runtime maps images as " + python_repr(normalization) +
                     ": re-export the bundle");
}

// `name` as a plain file of the bundle: no separators, no link, present (integrity.py's contained_file, word for word).
void contained_file(const std::string& directory, const std::string& name) {
    if (!plain_file_name(name))
        bundle_error("bundle " + directory + " names '" + name + "', which is not a file of it; it cannot be trusted: re-create it");
    const std::string path = directory + "/" + name;
    struct stat info {};
    // A link could point anywhere (and change after the check): bundles hold their files themselves.
    if (lstat(path.c_str(), &info) == 0 && S_ISLNK(info.st_mode))
        bundle_error("bundle " + directory + ": " + name + " is a link that leads outside it; replace it with the file itself");
    if (lstat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode))
        bundle_error("bundle " + directory + " is missing " + name + "; copy the whole folder again or re-create it");
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
    if (shape.size() > 4) throw Malformed{"ValueError: a shape has at most 4 sizes"};
    std::int64_t count = 1;
    for (const json& size : shape) {
        if (!size.is_number_integer()) throw Malformed{"TypeError: shape entries must be integers"};
        // Bounded one side at a time (as program buffers are), so no product of them overflows.
        if (size.get<std::int64_t>() < 1 || size.get<std::int64_t>() > kMaxShapeElements / count)
            throw Malformed{"ValueError: shape entries must be positive, at most " + std::to_string(kMaxShapeElements) + " elements in all"};
        spec.shape.push_back(size.get<std::int64_t>());
        count *= spec.shape.back();
    }
    const auto max_value = data.find("max_value");
    if (max_value != data.end()) {
        if (!max_value->is_number() || !std::isfinite(max_value->get<double>())) throw Malformed{"TypeError: max_value must be a finite number"};
        spec.max_value = max_value->get<double>();
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

}  // namespace

const SiteRecord& Manifest::site(const std::string& name) const {
    std::string names;
    for (const SiteRecord& record : sites) {
        if (record.name == name) return record;
        names += (names.empty() ? "" : ", ") + record.name;
    }
    bundle_error("bundle has no call site '" + name + "'; it has " + names);
}

json parse_json(const std::string& text, const std::string& what) {
    check_json_size(text.size(), what);
    const int depth = nesting(text);
    if (depth > kMaxJsonDepth)
        bundle_error(what + " nests " + std::to_string(depth) + " levels deep, more than the " + std::to_string(kMaxJsonDepth) +
                     " a fastgen JSON file may; re-create it");
    return json::parse(text, nullptr, /*allow_exceptions=*/false);
}

Manifest parse_manifest(const std::string& directory, const std::string& source, const std::string& text) {
    const json data = parse_json(text, source + " (not readable JSON)");
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
    check_enums(manifest, data);
    return manifest;
}

Manifest read_manifest(const std::string& directory_argument, bool verify) {
    const std::string directory = trimmed(directory_argument);
    const std::string path = directory + "/" + kManifestFile;
    struct stat info {};
    if (stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode))
        bundle_error(directory + " is not a bundle (no " + kManifestFile + "); make one with `fastgen export CHECKPOINT " + directory +
                     "`");
    contained_file(directory, kManifestFile);
    const std::optional<std::string> text = read_json_file(path, path + " (not readable JSON)");
    if (!text) bundle_error(path + " is not readable JSON (cannot read it); re-export the bundle");
    Manifest manifest = parse_manifest(directory, path, *text);
    // Without verify too: hashing is what it skips, never the stay-inside-the-bundle rule.
    std::set<std::string> names;
    for (const auto& entry : manifest.files) names.insert(entry.first);
    names.insert(manifest.program);
    for (const SiteRecord& site : manifest.sites) {
        names.insert(site.file);
        if (site.engine) names.insert(site.engine->file);
    }
    for (const std::string& name : names) contained_file(manifest.directory, name);
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
        contained_file(directory, name);
        if (sha256_file(manifest.path_of(name)) != expected)
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
    const std::optional<std::string> text = read_json_file(path, path + ": program");
    if (!text) bundle_error("bundle " + manifest.directory + ": cannot read its program " + manifest.program + "; re-export the bundle");
    const json program = parse_json(*text, path + ": program");
    if (program.is_discarded()) bundle_error("program is not valid JSON (" + path + "); re-export the bundle");
    return program;
}

}  // namespace fastgen::kit
