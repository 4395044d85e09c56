// fastgen-cpp-sample's output guard: fastgen/outputs.py's rules and messages, checked for every output before any
// work — never into a bundle or over the app's input, the suffix matches the kind, the folder exists and takes new
// files, an existing file is replaced only by one of its kind — and atomic writes: every output is written to a
// hidden sibling first and renamed into place only when all of them were written, so a failure leaves no half set.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace fastgen::app {

struct OutputKind {
    std::string name, suffix, signature;  // signature: how an existing file of the kind starts
};
inline const OutputKind kPng{"PNG image", ".png", "\x89PNG\r\n\x1a\n"};
inline const OutputKind kNpy{"NumPy .npy file", ".npy", "\x93NUMPY"};

// Throws std::runtime_error with the guard's message unless writing `path` as `kind` is safe; `inputs`: the
// command's own inputs (files or folders).
void check_output(const std::string& path, const OutputKind& kind, const std::vector<std::string>& inputs);

// The outputs of one command: stage() names a hidden sibling to write, commit() renames every staged file into place;
// staged files not committed (a failure on the way) are removed.
class StagedOutputs {
public:
    StagedOutputs() = default;
    StagedOutputs(const StagedOutputs&) = delete;
    StagedOutputs& operator=(const StagedOutputs&) = delete;
    ~StagedOutputs();
    // Calls write(staging path) for `path`.
    void stage(const std::string& path, const std::function<void(const std::string&)>& write);
    void commit();

private:
    std::vector<std::pair<std::string, std::string>> staged_;  // (staging, final)
};

}  // namespace fastgen::app
