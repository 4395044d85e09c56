// The sampling program (export/PROGRAM.md): parsed strictly from the manifest's JSON and run on the CPU over
// network sites. The kit never re-derives a family's maths: every constant comes from the program.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ops.hpp"

namespace fastgen::kit {

inline constexpr const char* kProgramFormat = "fastgen-program";
inline constexpr int kProgramVersion = 1;

struct SpectralFilter {
    std::string basis;
    std::vector<double> values;
};
struct NoiseOp {
    std::string out;
    double scale;
    std::optional<SpectralFilter> filter;
};
struct CallOp {
    std::string site, x, out;
};
struct PosteriorOp {
    std::string x, x_hat, out;
    PosteriorConstants constants;
    bool noisy;
};
struct MatheronOp {
    std::string x, x_hat, out;
    MatheronConstants constants;
    bool noisy;
};
struct ChainOp {
    std::string site, x, out;
    std::vector<double> timesteps;
    std::vector<bool> noise;
    std::vector<AffineConstants> affine;        // "step": "affine", one per step
    std::string basis;                          // "step": "blur"
    std::vector<std::vector<float>> blur;       // one coefficient set per step (made once, at parse time)
    bool is_blur() const { return !basis.empty(); }
};
struct UpsampleOp {
    std::string x, out;
};
struct RenoiseOp {
    std::string x, out;
    double signal, noise_scale;
};
using Op = std::variant<NoiseOp, CallOp, PosteriorOp, MatheronOp, ChainOp, UpsampleOp, RenoiseOp>;

struct Program {
    std::map<std::string, std::vector<std::int64_t>> buffers;  // shapes without the batch dimension
    std::vector<Op> ops;
    std::string output;
};

// A site as the interpreter sees it: its input and output shapes (without batch) and how to run it on float32
// host buffers (timesteps come as a float32 [B] input; the site converts to its graph's types).
struct SiteFunction {
    std::vector<std::vector<std::int64_t>> inputs;
    std::vector<std::int64_t> output;
    std::function<void(std::int64_t batch, const std::vector<const float*>& inputs, float* output)> run;
};
using Sites = std::map<std::string, SiteFunction>;

// Elements one image of a buffer may have (fastgen/sampling/program.py's MAX_BUFFER_ELEMENTS): far above any model's,
// and no product of a buffer's sides overflows int64.
inline constexpr std::int64_t kMaxBufferElements = std::int64_t{1} << 31;

// Parses and checks `data` (`source` names it in messages) against the shapes of `sites`; throws Failure(BUNDLE).
Program parse_program(const nlohmann::json& data, const std::string& source, const Sites& sites);

// Called after each network call with (calls made, calls in the whole program).
using Progress = std::function<void(std::int64_t done, std::int64_t total)>;

// A batch's rows: row r is image indices[r] of seed seeds[r]'s sequence, the same image whatever else is in the
// batch (the noise contract keys each row on its own). One seed's n images are the rows (seed, 0 … n − 1).
struct Rows {
    std::vector<std::uint64_t> seeds, indices;
    std::int64_t size() const { return static_cast<std::int64_t>(seeds.size()); }
    static Rows of_seed(std::uint64_t seed, std::int64_t n);
};

// Refuses (Failure ARGUMENT) rows the program cannot key: a seeds/indices length mismatch, no rows, or an index i
// whose elements i·P … i·P + P − 1 leave 64 bits for the program's largest draw of P elements per image.
void check_rows(const Program& program, const Rows& rows);

// Bytes of host (or device) memory one run of `batch` images takes: every buffer, plus a chain's three working
// copies and the draws of the largest buffer (an estimate from above, made before the first op).
std::uint64_t program_bytes(const Program& program, std::int64_t batch);
// Refuses (Failure OUT_OF_MEMORY) a run of `batch` images that needs more than `available` bytes of `memory`.
void check_memory(const Program& program, std::int64_t batch, std::uint64_t available, const std::string& memory);
// The host memory available now (Linux: MemAvailable), or UINT64_MAX where unknown.
std::uint64_t available_host_memory();

// Runs `program` for `rows` (checked by check_rows and check_memory); writes the output buffer [B, C, H, W] to `out`.
void run_program(const Program& program, const Sites& sites, const Rows& rows, float* out, const Progress& progress = {});

// "[3, 8, 8]": a shape as messages quote it.
std::string shape_text(const std::vector<std::int64_t>& shape);

// Network calls one run makes.
std::int64_t site_calls(const Program& program);

// The output buffer's shape (without batch).
const std::vector<std::int64_t>& output_shape(const Program& program);

}  // namespace fastgen::kit
