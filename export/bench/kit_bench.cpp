// fastgen-kit-bench BUNDLE [--n 4] [--threads 1] [--repeat 5] [--seed 0]: times whole samples of a bundle and, within
// them, the ONNX Runtime site calls, so that the kit's own cost (noise, step ops, copies) is the difference.
// Prints one JSON object: per repeat, the sample's and the sites' wall seconds.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "error.hpp"
#include "session.hpp"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]) == "--help") {
        std::cerr << "usage: fastgen-kit-bench BUNDLE [--n 4] [--threads 1] [--repeat 5] [--seed 0]\n";
        return 2;
    }
    long long n = 4, threads = 1, repeat = 5;
    unsigned long long seed = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string option = argv[i];
        const long long value = std::atoll(argv[i + 1]);
        if (option == "--n") n = value;
        else if (option == "--threads") threads = value;
        else if (option == "--repeat") repeat = value;
        else if (option == "--seed") seed = static_cast<unsigned long long>(value);
        else {
            std::cerr << "unknown option " << option << "\n";
            return 2;
        }
    }
    try {
        fastgen::kit::RuntimeOptions runtime;
        runtime.threads = static_cast<int>(threads);
        auto session = fastgen::kit::Session::open(argv[1], runtime, true);
        double site_seconds = 0.0;
        for (auto& [name, site] : session->sites) {
            site.run = [run = site.run, &site_seconds](std::int64_t batch, const std::vector<const float*>& inputs, float* output) {
                const auto start = Clock::now();
                run(batch, inputs, output);
                site_seconds += std::chrono::duration<double>(Clock::now() - start).count();
            };
        }
        std::vector<float> images(static_cast<std::size_t>(n * session->image_elements()));
        session->sample(n, seed, images.data());  // warm-up: ORT's first runs allocate
        std::string samples, sites;
        for (long long r = 0; r < repeat; ++r) {
            site_seconds = 0.0;
            const auto start = Clock::now();
            session->sample(n, seed, images.data());
            const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
            samples += (r ? ", " : "") + std::to_string(seconds);
            sites += (r ? ", " : "") + std::to_string(site_seconds);
        }
        std::cout << "{\"family\": \"" << session->manifest.family << "\", \"n\": " << n << ", \"threads\": " << threads
                  << ", \"sample_seconds\": [" << samples << "], \"site_seconds\": [" << sites << "]}\n";
    } catch (const fastgen::kit::Failure& failure) {
        std::cerr << "error: " << failure.what() << "\n";
        return 1;
    }
    return 0;
}
