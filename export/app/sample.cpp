// fastgen-cpp-sample: sample a fastgen bundle from C++ to a PNG grid (and the raw floats as .npy), the same images
// as `fastgen sample BUNDLE --seed S` for the same seed. Uses the installed API: fastgen/fastgen.hpp.
#include <fastgen/fastgen.hpp>

#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "arguments.hpp"
#include "outputs.hpp"
#include "png.hpp"

namespace {

const char* kUsage =
    "usage: fastgen-cpp-sample BUNDLE [--n 16] [--seed 0] [--out grid.png] [--npy raw.npy] [--nrow 8]\n"
    "                          [--provider cpu|cuda|tensorrt|nv_tensorrt_rtx] [--threads N] [--device I] [--no-verify]\n"
    "\n"
    "Samples N images from the fastgen bundle directory BUNDLE (the same images as `fastgen sample BUNDLE` for a seed).\n"
    "  --n N          number of images (default 16), sampled as one batch\n"
    "  --seed S       unsigned 64-bit seed (default 0): the same seed gives the same images\n"
    "  --out PATH     PNG grid to write (default grid.png); 8-bit, clamp(round((x + 1) * 127.5), 0, 255)\n"
    "  --npy PATH     also write the raw float32 images [N, C, H, W] in [-1, 1] as a NumPy .npy file\n"
    "  --nrow K       images per grid row (default 8)\n"
    "  --provider P   ONNX Runtime execution provider: cpu (default), cuda, tensorrt, nv_tensorrt_rtx\n"
    "  --threads T    ONNX Runtime CPU threads (default 0: ONNX Runtime's choice)\n"
    "  --device I     CUDA device for GPU providers (default 0)\n"
    "  --no-verify    skip the SHA-256 check of the bundle's files\n";

[[noreturn]] void usage_error(const std::string& message) {
    std::cerr << "error: " << message << "\n\n" << kUsage;
    std::exit(2);
}

// An option's unsigned integer in [smallest, largest] (arguments.hpp), or a usage error naming the range.
std::uint64_t number(const std::string& option, const char* text, std::uint64_t smallest, std::uint64_t largest) {
    const std::optional<std::uint64_t> value = fastgen::app::parse_unsigned(text, largest);
    if (!value || *value < smallest)
        usage_error(option + " takes an integer from " + std::to_string(smallest) + " to " + std::to_string(largest) + ", got '" + text + "'");
    return *value;
}

void write_npy(const std::string& path, const std::vector<float>& images, const fastgen::ImageShape& shape, long long n) {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(n) + ", " + std::to_string(shape.channels) +
                         ", " + std::to_string(shape.height) + ", " + std::to_string(shape.width) + "), }";
    header.append(64 - (10 + header.size() + 1) % 64, ' ');  // pad the preamble to a multiple of 64 bytes
    header += '\n';
    std::ofstream out(path, std::ios::binary);
    const unsigned short length = static_cast<unsigned short>(header.size());
    out.write("\x93NUMPY\x01\x00", 8);
    out.put(static_cast<char>(length & 0xff)).put(static_cast<char>(length >> 8));
    out << header;
    out.write(reinterpret_cast<const char*>(images.data()), static_cast<std::streamsize>(images.size() * sizeof(float)));
    if (!out) throw std::runtime_error("cannot write " + path);
}

// "sampling: 120/1000 network calls" on one terminal line.
void show_progress(int64_t done, int64_t total, void*) {
    std::fprintf(stderr, "\rsampling: %lld/%lld network calls", static_cast<long long>(done), static_cast<long long>(total));
    if (done == total) std::fputc('\n', stderr);
}

// N images NHWC → one grid image, `nrow` per row, 2 px black borders.
std::vector<std::uint8_t> grid(const std::vector<std::uint8_t>& pixels, const fastgen::ImageShape& shape, long long n, long long nrow,
                               int& width, int& height) {
    const long long columns = std::min(n, nrow), rows = (n + nrow - 1) / nrow, pad = 2;
    width = static_cast<int>(columns * (shape.width + pad) + pad);
    height = static_cast<int>(rows * (shape.height + pad) + pad);
    std::vector<std::uint8_t> out(static_cast<std::size_t>(width) * height * shape.channels, 0);
    for (long long image = 0; image < n; ++image) {
        const long long top = pad + (image / nrow) * (shape.height + pad), left = pad + (image % nrow) * (shape.width + pad);
        for (long long y = 0; y < shape.height; ++y)
            for (long long x = 0; x < shape.width; ++x)
                for (long long c = 0; c < shape.channels; ++c)
                    out[static_cast<std::size_t>(((top + y) * width + left + x) * shape.channels + c)] =
                        pixels[static_cast<std::size_t>(((image * shape.height + y) * shape.width + x) * shape.channels + c)];
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::string bundle_path, out = "grid.png", npy, provider = "cpu";
    long long n = 16, nrow = 8, threads = 0, device = 0;
    unsigned long long seed = 0;
    bool verify = true;
    for (int i = 1; i < argc; ++i) {
        const std::string argument = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage_error(argument + " needs a value");
            return argv[++i];
        };
        if (argument == "-h" || argument == "--help") {
            std::cout << kUsage;
            return 0;
        } else if (argument == "--n") {
            n = static_cast<long long>(number(argument, value(), 1, INT64_MAX));
        } else if (argument == "--seed") {
            seed = number(argument, value(), 0, UINT64_MAX);
        } else if (argument == "--out") {
            out = value();
        } else if (argument == "--npy") {
            npy = value();
        } else if (argument == "--nrow") {
            nrow = static_cast<long long>(number(argument, value(), 1, INT64_MAX));
        } else if (argument == "--provider") {
            provider = value();
        } else if (argument == "--threads") {
            threads = static_cast<long long>(number(argument, value(), 0, INT_MAX));
        } else if (argument == "--device") {
            device = static_cast<long long>(number(argument, value(), 0, INT_MAX));
        } else if (argument == "--no-verify") {
            verify = false;
        } else if (!argument.empty() && argument[0] == '-') {
            usage_error("unknown option " + argument);
        } else if (bundle_path.empty()) {
            bundle_path = argument;
        } else {
            usage_error("one bundle only, got '" + bundle_path + "' and '" + argument + "'");
        }
    }
    if (bundle_path.empty()) usage_error("give the bundle directory");
    try {
        // Every output is checked before any work, and all are written or none (outputs.hpp).
        fastgen::app::check_output(out, fastgen::app::kPng, {bundle_path});
        if (!npy.empty()) fastgen::app::check_output(npy, fastgen::app::kNpy, {bundle_path});
        const auto start = std::chrono::steady_clock::now();
        fastgen::Bundle bundle(bundle_path, fastgen::Options()
                                                .provider(provider)
                                                .threads(static_cast<int>(threads))
                                                .device(static_cast<int>(device))
                                                .verify(verify));
        const fastgen::ImageShape shape = bundle.image_shape();
        std::cerr << "bundle " << bundle_path << ": " << bundle.family() << ", " << bundle.precision() << ", images " << shape.channels << "x"
                  << shape.height << "x" << shape.width << "; sampling " << n << " (seed " << seed << ", " << provider << ")\n";
        if (isatty(STDERR_FILENO)) bundle.set_progress(show_progress);
        const auto opened = std::chrono::steady_clock::now();
        const std::vector<float> images = bundle.sample(n, seed);
        const auto sampled = std::chrono::steady_clock::now();
        const std::vector<std::uint8_t> pixels = bundle.to_u8(images);
        int width = 0, height = 0;
        const std::vector<std::uint8_t> picture = grid(pixels, shape, n, nrow, width, height);
        fastgen::app::StagedOutputs outputs;
        outputs.stage(out, [&](const std::string& path) { write_png(path, width, height, static_cast<int>(shape.channels), picture); });
        if (!npy.empty()) outputs.stage(npy, [&](const std::string& path) { write_npy(path, images, shape, n); });
        outputs.commit();
        std::cerr << n << " images → " << out << (npy.empty() ? "" : ", " + npy);
        const auto seconds = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
        std::cerr << " (open " << seconds(start, opened) << " s, sample " << seconds(opened, sampled) << " s)\n";
    } catch (const fastgen::Error& error) {
        std::cerr << "error: " << error.what() << "\n";
        return 1;
    } catch (const std::exception& error) {
        std::cerr << "error: " << error.what() << "\n";
        return 1;
    }
    return 0;
}
