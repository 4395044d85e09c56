#include "session.hpp"

#include <cmath>
#include <utility>

#include "error.hpp"
#ifdef FASTGEN_WITH_CUDA
#include "gpu_program.hpp"
#endif

namespace fastgen::kit {
namespace {

using nlohmann::json;

// Python's repr of a shape as a tuple: (1, 8, 8), (8,), ().
std::string tuple_text(const std::vector<std::int64_t>& shape) {
    std::string text;
    for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return "(" + text + (shape.size() == 1 ? ",)" : ")");
}

std::string specs_text(const std::vector<std::pair<std::vector<std::int64_t>, std::string>>& specs) {
    std::string text;
    for (const auto& [shape, dtype] : specs) text += (text.empty() ? "(" : ", (") + tuple_text(shape) + ", '" + dtype + "')";
    return "[" + text + "]";
}

// The program agrees with the manifest it came with (fastgen/runtime's check_program, message for message): it makes
// the images the manifest declares, its buffers are no larger than those images, and every network call passes the
// manifest's site its float32 input and output shapes (a chain: at most T integer timesteps in [0, T − 1]).
void check_program(const Manifest& manifest, const Program& program) {
    const std::string where = "bundle " + manifest.directory + ": its program";
    const json& image = manifest.model.is_object() && manifest.model.contains("image") ? manifest.model["image"] : json();
    const auto side = [&](const char* key) -> std::int64_t {
        const json value = image.is_object() && image.contains(key) ? image[key] : json();
        if (!value.is_number_integer() || value.get<std::int64_t>() < 1 || value.get<std::int64_t>() > 65536)
            bundle_error("bundle " + manifest.directory + ": manifest.model.image." + key + " must be an integer from 1 to 65536; re-export the bundle");
        return value.get<std::int64_t>();
    };
    const std::vector<std::int64_t> images{side("channels"), side("resolution"), side("resolution")};
    if (output_shape(program) != images)
        bundle_error(where + " makes images of shape " + shape_text(output_shape(program)) + ", but the manifest declares " + shape_text(images) +
                     "; re-export the bundle");
    const std::int64_t image_elements = images[0] * images[1] * images[2];
    for (const auto& [name, shape] : program.buffers) {
        std::int64_t count = 1;
        for (std::int64_t size : shape) count *= size;
        if (count > image_elements)
            bundle_error(where + "'s buffer '" + name + "' " + shape_text(shape) + " is larger than the " + shape_text(images) +
                         " images it makes; re-export the bundle");
    }
    for (std::size_t k = 0; k < program.ops.size(); ++k) {
        const auto* call = std::get_if<CallOp>(&program.ops[k]);
        const auto* chain = std::get_if<ChainOp>(&program.ops[k]);
        if (call == nullptr && chain == nullptr) continue;
        const std::string place = where + "'s op " + std::to_string(k) + (call ? " (call)" : " (denoise_chain)");
        const std::string& site = call ? call->site : chain->site;
        const SiteRecord& record = manifest.site(site);
        const std::vector<std::int64_t>& x = program.buffers.at(call ? call->x : chain->x);
        const std::vector<std::int64_t>& out = program.buffers.at(call ? call->out : chain->out);
        std::vector<std::pair<std::vector<std::int64_t>, std::string>> given{{x, "float32"}}, taken;
        if (chain) given.push_back({{}, "float32"});
        for (const TensorSpec& input : record.inputs) taken.push_back({input.shape, input.dtype});
        if (given != taken || record.output.shape != out || record.output.dtype != "float32")
            bundle_error(place + " passes " + site + " " + specs_text(given) + " → " + tuple_text(out) + ", but the manifest's site takes " +
                         specs_text(taken) + " → " + tuple_text(record.output.shape) + "; re-export the bundle");
        if (chain) {
            const double steps = std::floor(record.inputs[1].max_value) + 1;  // int(max_value) + 1 for max_value ≥ 0
            bool fits = static_cast<double>(chain->timesteps.size()) <= steps;
            for (double t : chain->timesteps) fits = fits && t >= 0 && t < steps && t == std::round(t);
            if (!fits) {
                const std::string count = std::to_string(static_cast<std::int64_t>(steps));
                bundle_error(place + " runs " + std::to_string(chain->timesteps.size()) + " steps; a " + count + "-step model takes at most " + count +
                             " integer timesteps in [0, " + std::to_string(static_cast<std::int64_t>(steps) - 1) + "]: re-export the bundle");
            }
        }
    }
}

}  // namespace

std::unique_ptr<Session> Session::open(const std::string& path, const RuntimeOptions& runtime, bool verify) {
    auto session = std::make_unique<Session>();
    session->runtime = runtime;
    session->manifest = read_manifest(path, verify);
    const Manifest& manifest = session->manifest;
    for (const SiteRecord& record : manifest.sites) {
        session->opened.push_back(std::make_unique<Site>(manifest, record, runtime));
        Site* site = session->opened.back().get();
        SiteFunction function{{}, record.output.shape, [site](std::int64_t batch, const std::vector<const float*>& inputs, float* output) {
                                  site->run(batch, inputs, output);
                              }};
        for (const TensorSpec& input : record.inputs) function.inputs.push_back(input.shape);
        session->sites[record.name] = std::move(function);
    }
    session->program = parse_program(read_program_json(manifest), manifest.path_of(manifest.program), session->sites);
    check_program(manifest, session->program);
#ifdef FASTGEN_WITH_CUDA
    if (provider_is_gpu(runtime.provider)) {
        DeviceSites sites;
        for (const std::unique_ptr<Site>& opened : session->opened) {
            Site* site = opened.get();
            sites[site->record().name] = {site->record(), [site](std::int64_t batch, const std::vector<const void*>& inputs, void* output) {
                                              site->run_device(batch, inputs, output);
                                          }};
        }
        session->gpu = std::make_shared<GpuProgram>(session->program, std::move(sites), runtime.device);
    }
#endif
    return session;
}

std::int64_t Session::image_elements() const {
    std::int64_t count = 1;
    for (std::int64_t size : output_shape(program)) count *= size;
    return count;
}

void Session::sample(const Rows& rows, float* images, const Progress& progress) const {
    check_rows(program, rows);
    if (runs_engines()) check_engine_batch(manifest, rows.size());
#ifdef FASTGEN_WITH_CUDA
    if (gpu) return gpu->run(rows, images, progress);
#endif
    run_program(program, sites, rows, images, progress);
}

void Session::sample(std::int64_t n, std::uint64_t seed, float* images, const Progress& progress) const {
    if (n < 1) argument_error("the number of images must be ≥ 1, got " + std::to_string(n));
    check_memory(n);
    sample(Rows::of_seed(seed, n), images, progress);
}

void Session::check_memory(std::int64_t n) const {
#ifdef FASTGEN_WITH_CUDA
    if (gpu) return gpu->check_memory(n);
#endif
    kit::check_memory(program, n, available_host_memory(), "memory");
}

}  // namespace fastgen::kit
