#include "outputs.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fastgen::app {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void refuse(const std::string& message) { throw std::runtime_error(message); }

bool is_bundle(const fs::path& folder) {
    std::error_code error;
    return fs::is_directory(folder, error) && fs::is_regular_file(folder / "manifest.json", error);
}

bool starts_with(const fs::path& file, const std::string& signature) {
    std::ifstream stream(file, std::ios::binary);
    std::string head(signature.size(), '\0');
    return stream.read(head.data(), static_cast<std::streamsize>(head.size())) && head == signature;
}

}  // namespace

void check_output(const std::string& given, const OutputKind& kind, const std::vector<std::string>& inputs) {
    const fs::path path(given);
    std::error_code error;
    const fs::path target = fs::weakly_canonical(fs::absolute(path), error);
    if (error) refuse("cannot resolve " + given + " (" + error.message() + "); choose another path");
    const fs::path folder = target.parent_path();
    if (!fs::exists(folder)) refuse(given + ": its folder " + folder.string() + " does not exist; create it first");
    if (!fs::is_directory(folder)) refuse(given + " lies below " + folder.string() + ", which is a file, not a folder; choose another path");
    if (access(folder.c_str(), W_OK) != 0)
        refuse("cannot write in " + folder.string() + " (" + std::strerror(errno) + "); choose a writable location for " + given);
    for (fs::path above = folder;; above = above.parent_path()) {
        if (is_bundle(above)) refuse(given + " is inside the bundle " + above.string() + "; write it somewhere else");
        if (above == above.root_path() || above.empty()) break;
    }
    for (const std::string& input : inputs) {
        const fs::path source = fs::weakly_canonical(fs::absolute(input), error);
        const auto [mismatch, rest] = std::mismatch(target.begin(), target.end(), source.begin(), source.end());
        if (mismatch == target.end())  // the target is the input or a folder above it
            refuse(given + " would replace this command's own input " + source.string() + "; choose another output path");
    }
    std::string suffix = path.extension().string();
    std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (suffix != kind.suffix && !fs::is_directory(target))
        refuse(given + ": a " + kind.name + " is written to a file ending in " + kind.suffix + "; name it so");
    if (!fs::exists(fs::symlink_status(target))) return;
    if (fs::is_directory(target))
        refuse(given + " is a folder; give a file name for the " + kind.name + ", e.g. " + (path / ("out" + kind.suffix)).string());
    if (!starts_with(target, kind.signature))
        refuse(given + " exists and is not a " + kind.name + ": refusing to overwrite it; choose another file name");
}

StagedOutputs::~StagedOutputs() {
    for (const auto& entry : staged_) {
        std::error_code ignored;
        fs::remove(entry.first, ignored);
    }
}

void StagedOutputs::stage(const std::string& path, const std::function<void(const std::string&)>& write) {
    static std::atomic<int> counter{0};
    const fs::path final_path(path);
    const fs::path staging =
        final_path.parent_path() / ("." + final_path.filename().string() + "." + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".tmp");
    staged_.emplace_back(staging.string(), path);
    write(staging.string());
}

void StagedOutputs::commit() {
    for (const auto& [staging, final_path] : staged_) {
        std::error_code error;
        fs::rename(staging, final_path, error);
        if (error) throw std::runtime_error("cannot write " + final_path + " (" + error.message() + ")");
    }
    staged_.clear();
}

}  // namespace fastgen::app
