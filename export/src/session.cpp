#include "session.hpp"

#include "error.hpp"
#ifdef FASTGEN_WITH_CUDA
#include "gpu_program.hpp"
#endif

namespace fastgen::kit {

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
    sample(Rows::of_seed(seed, n), images, progress);
}

}  // namespace fastgen::kit
