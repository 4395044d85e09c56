#include "gpu_program.hpp"

#include <cuda_runtime.h>

#include <utility>
#include <vector>

#include "error.hpp"
#include "gpu_fft.hpp"
#include "gpu_ops.hpp"

namespace fastgen::kit {
namespace {

using gpu::check_cuda;

std::int64_t elements(const std::vector<std::int64_t>& shape) {
    std::int64_t count = 1;
    for (std::int64_t size : shape) count *= size;
    return count;
}

std::size_t dtype_size(const std::string& dtype) {
    if (dtype == "float16" || dtype == "bfloat16") return 2;
    return dtype == "int64" ? 8 : 4;
}

bool uses_fft(const Op& op) {
    if (const auto* noise = std::get_if<NoiseOp>(&op)) return noise->filter.has_value();
    if (const auto* chain = std::get_if<ChainOp>(&op)) return chain->is_blur();
    return std::holds_alternative<MatheronOp>(op);
}

}  // namespace

// One batch size's device memory and captured graphs.
struct GpuProgram::Workspace {
    gpu::DeviceCache cache;               // buffers, scratch, constants, cuFFT plans
    std::vector<cudaGraphExec_t> graphs;  // the step ops between network calls, in program order
    int samples = 0;                      // 0: the next sample runs eagerly, 1: it captures, more: it replays

    explicit Workspace(gpu::Stream stream) : cache(stream) {}
    ~Workspace() { drop_graphs(); }
    void drop_graphs() {
        for (cudaGraphExec_t graph : graphs) cudaGraphExecDestroy(graph);
        graphs.clear();
    }
    // Device memory `key` of `bytes` bytes: allocated by the eager sample, the same memory for every later one.
    void* get(const std::string& key, std::size_t bytes) { return cache.memory(key, bytes); }
};

// One sample. Each op enqueues its kernels (and cuFFT transforms) through kernels(), which captures or replays them;
// a network call first closes the current run of kernels (synchronize()). A program has no data-dependent control flow,
// so every sample of a batch size meets the same runs of kernels in the same order.
class GpuProgram::Run {
public:
    Run(GpuProgram& owner, Workspace& workspace, const Rows& rows, const Progress& progress)
        : owner_(owner), program_(owner.program_), workspace_(workspace), batch_(rows.size()), rows_(rows), progress_(progress),
          total_calls_(site_calls(owner.program_)),
          mode_(workspace.samples == 0 ? Mode::eager : workspace.samples == 1 ? Mode::capture : Mode::replay) {}

    ~Run() {
        if (finished_ || mode_ != Mode::capture) return;
        if (segment_open_) {  // a failure inside a capture: end it and capture again next time
            cudaGraph_t graph = nullptr;
            if (cudaStreamEndCapture(stream(), &graph) == cudaSuccess && graph != nullptr) cudaGraphDestroy(graph);
        }
        workspace_.drop_graphs();
    }

    void execute(float* out) {
        // The rows' keys go to the same device words every sample, outside the graphs, which read them there.
        const std::size_t words = static_cast<std::size_t>(batch_) * sizeof(std::uint64_t);
        seeds_ = static_cast<std::uint64_t*>(workspace_.get("seeds", words));
        indices_ = static_cast<std::uint64_t*>(workspace_.get("indices", words));
        check_cuda(cudaMemcpyAsync(seeds_, rows_.seeds.data(), words, cudaMemcpyHostToDevice, stream()), "copy of the seeds");
        check_cuda(cudaMemcpyAsync(indices_, rows_.indices.data(), words, cudaMemcpyHostToDevice, stream()), "copy of the image indices");
        for (std::size_t k = 0; k < program_.ops.size(); ++k) {
            op_ = static_cast<std::uint32_t>(k);
            std::visit([this](const auto& op) { execute(op); }, program_.ops[k]);
        }
        end_segment();
        check_cuda(cudaMemcpyAsync(out, buffer(program_.output), bytes(program_.output), cudaMemcpyDeviceToHost, stream()), "copy of the images");
        check_cuda(cudaStreamSynchronize(stream()), "sampling");
        finished_ = true;
        ++workspace_.samples;
    }

private:
    enum class Mode { eager, capture, replay };

    cudaStream_t stream() const { return static_cast<cudaStream_t>(owner_.stream_); }
    gpu::DeviceCache& cache() { return workspace_.cache; }

    // Enqueues `launch`'s device work (kernels, device copies) as part of the current run of kernels.
    template <typename Launch>
    void kernels(Launch&& launch) {
        if (mode_ == Mode::replay) {
            if (!segment_open_) check_cuda(cudaGraphLaunch(workspace_.graphs.at(next_graph_++), stream()), "cudaGraphLaunch");
            segment_open_ = true;
            return;
        }
        if (mode_ == Mode::capture && !segment_open_)
            check_cuda(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        segment_open_ = mode_ == Mode::capture;
        launch();
        check_cuda(cudaGetLastError(), "kernel launch");
    }
    void end_segment() {
        if (!segment_open_) return;
        segment_open_ = false;
        if (mode_ != Mode::capture) return;
        cudaGraph_t graph = nullptr;
        check_cuda(cudaStreamEndCapture(stream(), &graph), "cudaStreamEndCapture");
        cudaGraphExec_t exec = nullptr;
        const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        check_cuda(status, "cudaGraphInstantiate");
        workspace_.graphs.push_back(exec);
        check_cuda(cudaGraphLaunch(exec, stream()), "cudaGraphLaunch");
    }
    // The host is about to read device results or hand buffers to ONNX Runtime.
    void synchronize() {
        end_segment();
        check_cuda(cudaStreamSynchronize(stream()), "cudaStreamSynchronize");
    }

    std::int64_t count(const std::string& name) const { return batch_ * elements(program_.buffers.at(name)); }
    std::size_t bytes(const std::string& name) const { return static_cast<std::size_t>(count(name)) * sizeof(float); }
    Shape4 shape(const std::string& name) const {
        const std::vector<std::int64_t>& s = program_.buffers.at(name);
        return {batch_, s[0], s.size() > 1 ? s[1] : 1, s.size() > 2 ? s[2] : 1};
    }
    float* floats(const std::string& key, std::int64_t count) {
        return static_cast<float*>(workspace_.get(key, static_cast<std::size_t>(count) * sizeof(float)));
    }
    float* buffer(const std::string& name) { return floats("buffer " + name, count(name)); }
    std::string scratch(const std::string& what) const { return "op " + std::to_string(op_) + " " + what; }
    // Draw `index` of this op, shaped as buffer `like`, into the op's scratch `name`.
    const float* draw(std::uint32_t index, const std::string& like, const std::string& name = "noise") {
        float* z = floats(scratch(name), count(like));
        kernels([&] { draw_into(index, like, z); });
        return z;
    }
    // Enqueues draw `index` of this op shaped as buffer `like` into `out` (inside a kernels() run).
    void draw_into(std::uint32_t index, const std::string& like, float* out) {
        gpu::draw_normals(seeds_, indices_, batch_, elements(program_.buffers.at(like)), op_, index, out, stream());
    }
    void called() {
        if (progress_) progress_(++calls_, total_calls_);
    }

    // Runs site `name` on float32 device inputs into `out`, converting to and from the graph's types on the device.
    void call(const std::string& name, const std::vector<const float*>& inputs, float* out) {
        const DeviceSite& site = owner_.sites_.at(name);
        const SiteRecord& record = site.record;
        std::vector<const void*> typed;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const TensorSpec& spec = record.inputs[i];
            if (spec.dtype == "float32") {
                typed.push_back(inputs[i]);
                continue;
            }
            const std::int64_t n = batch_ * elements(spec.shape);
            void* converted = workspace_.get("site " + name + " input " + std::to_string(i), static_cast<std::size_t>(n) * dtype_size(spec.dtype));
            kernels([&] { gpu::from_float(inputs[i], n, spec.dtype, converted, stream()); });
            typed.push_back(converted);
        }
        const TensorSpec& output = record.output;
        const std::int64_t n = batch_ * elements(output.shape);
        void* result = output.dtype == "float32" ? static_cast<void*>(out)
                                                 : workspace_.get("site " + name + " output", static_cast<std::size_t>(n) * dtype_size(output.dtype));
        synchronize();
        site.run(batch_, typed, result);
        // ONNX Runtime synchronises its own stream at the end of Run by default; waiting for the device here keeps
        // the next kernels correct whatever stream and setting the provider used.
        check_cuda(cudaDeviceSynchronize(), "waiting for site " + name);
        called();
        if (result != out) kernels([&] { gpu::to_float(result, n, output.dtype, out, stream()); });
    }

    void execute(const NoiseOp& op) {
        float* out = buffer(op.out);
        const std::int64_t n = count(op.out);
        kernels([&] {
            draw_into(0, op.out, out);
            if (op.filter) gpu::spectral_filter(cache(), scratch("constants"), op.filter->basis, op.filter->values, shape(op.out), out);
            if (op.scale != 1.0) gpu::scale(out, static_cast<float>(op.scale), n, out, stream());
        });
    }
    void execute(const CallOp& op) { call(op.site, {buffer(op.x)}, buffer(op.out)); }
    void execute(const PosteriorOp& op) {
        const Shape4 s = shape(op.out);
        const PosteriorConstants& c = op.constants;
        const float* e = op.noisy ? draw(0, op.out) : nullptr;
        const float *x = buffer(op.x), *x_hat = buffer(op.x_hat);
        float* out = buffer(op.out);  // each thread reads its whole block before writing it: in place is safe
        kernels([&] {
            gpu::udpm_posterior(x, x_hat, e, s.planes(), s.height / c.gamma, s.width / c.gamma, c.gamma, c.taps.data(), c.kx, c.kp, c.ky,
                                c.ke, c.kep, out, stream());
        });
    }
    void execute(const MatheronOp& op) {
        const float* e = op.noisy ? draw(0, op.out) : nullptr;
        const float* e_prime = op.noisy ? draw(1, op.x, "noise prime") : nullptr;
        const float *x = buffer(op.x), *x_hat = buffer(op.x_hat);
        float* out = buffer(op.out);  // per pixel, x̂ is read before out is written: in place is safe
        kernels([&] { gpu::udpm_matheron(cache(), scratch("constants"), op.constants, x, x_hat, e, e_prime, shape(op.x), shape(op.out), out); });
    }
    void execute(const ChainOp& op) {
        const std::int64_t n = count(op.x);
        float *current = floats(scratch("x"), n), *next = floats(scratch("next"), n), *model_out = floats(scratch("model output"), n);
        float* t = floats(scratch("t"), batch_);
        const float* source = buffer(op.x);
        kernels([&] { check_cuda(cudaMemcpyAsync(current, source, bytes(op.x), cudaMemcpyDeviceToDevice, stream()), "device copy"); });
        for (std::size_t i = 0; i < op.timesteps.size(); ++i) {
            const auto timestep = static_cast<float>(op.timesteps[i]);
            kernels([&] { gpu::fill(timestep, batch_, t, stream()); });
            call(op.site, {current, t}, model_out);
            const float* z = op.noise[i] ? draw(static_cast<std::uint32_t>(i), op.x) : nullptr;
            kernels([&] {
                if (op.is_blur()) {
                    gpu::blur_step(cache(), scratch("step " + std::to_string(i)), op.basis, op.blur[i], current, model_out, z, shape(op.x), next);
                    return;
                }
                const AffineConstants& c = op.affine[i];
                gpu::affine_step(current, model_out, z, n, c.a, c.b, c.clip, c.p, c.q, c.r, c.s, next, stream());
            });
            std::swap(current, next);
        }
        float* out = buffer(op.out);
        kernels([&] { check_cuda(cudaMemcpyAsync(out, current, bytes(op.x), cudaMemcpyDeviceToDevice, stream()), "device copy"); });
    }
    void execute(const UpsampleOp& op) {
        const Shape4 s = shape(op.x);
        const float* x = buffer(op.x);
        float* out = buffer(op.out);
        kernels([&] { gpu::upsample(x, s.planes(), s.height, s.width, out, stream()); });
    }
    void execute(const RenoiseOp& op) {
        const std::int64_t n = count(op.x);
        const float* z = draw(0, op.x);
        const float* x = buffer(op.x);
        float* out = buffer(op.out);
        kernels([&] { gpu::renoise(x, z, static_cast<float>(op.signal), static_cast<float>(op.noise_scale), n, out, stream()); });
    }

    GpuProgram& owner_;
    const Program& program_;
    Workspace& workspace_;
    std::int64_t batch_;
    const Rows& rows_;
    const Progress& progress_;
    std::int64_t total_calls_, calls_ = 0;
    Mode mode_;
    std::uint64_t *seeds_ = nullptr, *indices_ = nullptr;  // device words: the rows' keys
    std::uint32_t op_ = 0;
    bool segment_open_ = false, finished_ = false;
    std::size_t next_graph_ = 0;
};

GpuProgram::GpuProgram(const Program& program, DeviceSites sites, int device)
    : program_(program), sites_(std::move(sites)), device_(device) {
    for (const Op& op : program.ops) {
        if (uses_fft(op)) gpu::require_cufft();  // refused at open, not mid-sample
        if (const auto* posterior = std::get_if<PosteriorOp>(&op); posterior && posterior->constants.gamma > gpu::kMaxGamma)
            fail(FASTGEN_ERROR_UNSUPPORTED, "the GPU path takes UDPM scale factors up to " + std::to_string(gpu::kMaxGamma) + ", the bundle has " +
                                                std::to_string(posterior->constants.gamma) + "; use provider cpu");
    }
    check_cuda(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
    cudaStream_t stream = nullptr;
    check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    stream_ = stream;
}

GpuProgram::~GpuProgram() {
    workspaces_.clear();
    cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void GpuProgram::check_memory(std::int64_t batch) {
    if (workspaces_.count(batch)) return;  // its memory is allocated already
    check_cuda(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    std::size_t free = 0, total = 0;
    check_cuda(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    kit::check_memory(program_, batch, free, "GPU memory");
}

void GpuProgram::run(const Rows& rows, float* out, const Progress& progress) {
    check_rows(program_, rows);
    std::lock_guard<std::mutex> lock(running_);
    check_cuda(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    check_memory(rows.size());
    std::unique_ptr<Workspace>& workspace = workspaces_[rows.size()];
    if (!workspace) workspace = std::make_unique<Workspace>(stream_);
    Run(*this, *workspace, rows, progress).execute(out);
}

}  // namespace fastgen::kit
