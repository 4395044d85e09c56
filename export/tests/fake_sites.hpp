// The fake network sites of make_fixtures.py and its fixture programs, shared by the interpreter tests (CPU and GPU).
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "program.hpp"

namespace fastgen::test {

using fastgen::kit::SiteFunction;
using fastgen::kit::Sites;
using nlohmann::json;

inline std::vector<std::int64_t> shape_of(const json& program, const std::string& buffer) {
    return program["buffers"][buffer].get<std::vector<std::int64_t>>();
}

// The fake sites of make_fixtures.py: a call site is 0.9 × nearest upsampling; a denoising site 0.5·x + 0.001·t.
inline Sites fake_sites(const json& program) {
    Sites sites;
    for (const json& op : program["ops"]) {
        if (op["op"] == "call") {
            const auto in = shape_of(program, op["x"]), out = shape_of(program, op["out"]);
            sites[op["site"]] = SiteFunction{{in}, out, [in, out](std::int64_t batch, const std::vector<const float*>& inputs, float* output) {
                                                 const std::int64_t factor = out[2] / in[2];
                                                 for (std::int64_t p = 0; p < batch * out[0]; ++p)
                                                     for (std::int64_t y = 0; y < out[1]; ++y)
                                                         for (std::int64_t x = 0; x < out[2]; ++x)
                                                             output[(p * out[1] + y) * out[2] + x] =
                                                                 0.9f * inputs[0][(p * in[1] + y / factor) * in[2] + x / factor];
                                             }};
        } else if (op["op"] == "denoise_chain") {
            const auto shape = shape_of(program, op["x"]);
            const std::int64_t per_image = shape[0] * shape[1] * shape[2];
            sites[op["site"]] = SiteFunction{{shape, {}}, shape, [per_image](std::int64_t batch, const std::vector<const float*>& inputs, float* output) {
                                                 for (std::int64_t i = 0; i < batch * per_image; ++i)
                                                     output[i] = 0.5f * inputs[0][i] + 0.001f * inputs[1][i / per_image];
                                             }};
        }
    }
    return sites;
}

// The fixture programs make_fixtures.py writes: every family's and the single-op ones.
inline auto fixture_programs() {
    return testing::Values("udpm_box", "udpm_gaussian", "ddpm_ancestral", "ddim_clip", "blur_fourier", "blur_dct", "pddpm", "udpm_posterior_gamma3",
                           "dct_noise_upsample_renoise");
}

// A batch mixing seeds and image indices: repeated and out-of-order seeds, an image twice, indices past 0.
inline fastgen::kit::Rows mixed_rows() { return {{1001, 7, 1001, 0xfedcba9876543210ULL, 7}, {3, 0, 0, 2, 0}}; }

}  // namespace fastgen::test
