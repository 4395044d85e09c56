#include "onnxruntime.hpp"

#include <dlfcn.h>

#include <onnxruntime_cxx_api.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <numeric>

#include "error.hpp"

namespace fastgen::kit {
namespace {

[[noreturn]] void runtime_error(const std::string& message) { fail(FASTGEN_ERROR_RUNTIME, message); }

struct Library {
    void* handle = nullptr;
    const OrtApiBase* base = nullptr;
    std::string path;
    std::unique_ptr<Ort::Env> env;
};

Library& library() {
    static Library loaded;
    return loaded;
}

// Loads ONNX Runtime once per process: `requested`, else $FASTGEN_ONNXRUNTIME_LIBRARY, else libonnxruntime.so.1
// beside this library, else the system search path. Sets up the C++ API and one Env.
Library& load_library(const std::string& requested) {
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    Library& lib = library();
    if (lib.handle != nullptr) return lib;
    const std::vector<std::string> candidates = requested.empty()
        ? library_candidates("FASTGEN_ONNXRUNTIME_LIBRARY", {"libonnxruntime.so.1", "libonnxruntime.so"})
        : std::vector<std::string>{requested};
    std::string errors;
    lib.handle = open_first_library(candidates, lib.path, errors);
    if (lib.handle == nullptr)
        runtime_error("cannot load ONNX Runtime (" + errors + "); pip install onnxruntime and rebuild the kit, or set "
                      "FASTGEN_ONNXRUNTIME_LIBRARY to a libonnxruntime.so");
    using GetApiBase = const OrtApiBase* (*)();
    auto get_api_base = reinterpret_cast<GetApiBase>(dlsym(lib.handle, "OrtGetApiBase"));
    if (get_api_base == nullptr) runtime_error(lib.path + " has no OrtGetApiBase: not an ONNX Runtime library");
    const OrtApiBase* base = lib.base = get_api_base();
    const OrtApi* api = base->GetApi(ORT_API_VERSION);
    if (api == nullptr)
        runtime_error("ONNX Runtime " + std::string(base->GetVersionString()) + " (" + lib.path + ") is older than the headers the "
                      "kit was built with (API " + std::to_string(ORT_API_VERSION) + "); pip install -U onnxruntime");
    Ort::InitApi(api);
    try {
        lib.env = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_ERROR, "fastgen");
    } catch (const Ort::Exception& error) {
        runtime_error(std::string("ONNX Runtime could not start: ") + error.what());
    }
    return lib;
}

ONNXTensorElementDataType element_type(const std::string& dtype, const std::string& where) {
    if (dtype == "float32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    if (dtype == "float16") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    if (dtype == "bfloat16") return ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
    if (dtype == "int64") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    if (dtype == "int32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    fail(FASTGEN_ERROR_UNSUPPORTED, where + " has dtype " + dtype + ", which the kit does not feed; re-export the bundle");
}

std::size_t element_size(ONNXTensorElementDataType type) {
    switch (type) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return 2;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return 8;
        default: return 4;
    }
}

// float32 → the graph's input type, as torch's Tensor.to(dtype) does (ints truncate toward zero).
void convert_from_float(const float* in, std::size_t count, ONNXTensorElementDataType type, void* out) {
    switch (type) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: std::memcpy(out, in, count * sizeof(float)); return;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
            for (std::size_t i = 0; i < count; ++i) static_cast<std::int64_t*>(out)[i] = static_cast<std::int64_t>(in[i]);
            return;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
            for (std::size_t i = 0; i < count; ++i) static_cast<std::int32_t*>(out)[i] = static_cast<std::int32_t>(in[i]);
            return;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
            for (std::size_t i = 0; i < count; ++i) static_cast<Ort::Float16_t*>(out)[i] = Ort::Float16_t(in[i]);
            return;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
            for (std::size_t i = 0; i < count; ++i) static_cast<Ort::BFloat16_t*>(out)[i] = Ort::BFloat16_t(in[i]);
            return;
        default: fail(FASTGEN_ERROR_INTERNAL, "unexpected input element type");
    }
}

void convert_to_float(const void* in, std::size_t count, ONNXTensorElementDataType type, float* out) {
    switch (type) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: std::memcpy(out, in, count * sizeof(float)); return;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
            for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<const Ort::Float16_t*>(in)[i].ToFloat();
            return;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
            for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<const Ort::BFloat16_t*>(in)[i].ToFloat();
            return;
        default: fail(FASTGEN_ERROR_UNSUPPORTED, "site outputs must be floating point; re-export the bundle");
    }
}

std::int64_t elements(const std::vector<std::int64_t>& shape) {
    return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
}

// The NvTensorRTRTX execution provider is a plugin library (PyPI onnxruntime-ep-nv-tensorrt-rtx-cu13).
void append_nv_tensorrt_rtx(Ort::Env& env, Ort::SessionOptions& options, int device) {
    static std::once_flag registered;
    std::call_once(registered, [&env] {
        const char* variable = std::getenv("FASTGEN_NV_TENSORRT_RTX_EP_LIBRARY");
        const std::string path = variable && *variable ? variable : "libonnxruntime_providers_nv_tensorrt_rtx.so";
        env.RegisterExecutionProviderLibrary("NvTensorRTRTX", path);
    });
    std::vector<Ort::ConstEpDevice> chosen;
    int index = 0;
    for (const Ort::ConstEpDevice& candidate : env.GetEpDevices())
        if (std::strcmp(candidate.EpName(), "NvTensorRTRTXExecutionProvider") == 0 && index++ == device) chosen.push_back(candidate);
    if (chosen.empty())
        runtime_error("the NvTensorRTRTX execution provider sees no GPU number " + std::to_string(device) +
                      "; it needs an RTX-class GPU (compute capability 8.0, 8.6, 8.9 or 12.x) and its driver");
    options.AppendExecutionProvider_V2(env, chosen, std::unordered_map<std::string, std::string>{});
}

// The provider that runs engines of `flavour` (manifest engine records): its EPContext source name, or "" if none.
const char* engine_source(Provider provider, const std::string& flavour) {
    if (provider == Provider::tensorrt && flavour == "tensorrt") return "TensorrtExecutionProvider";
    if (provider == Provider::nv_tensorrt_rtx && flavour == "tensorrt_rtx") return "NvTensorRTRTXExecutionProvider";
    return "";
}

// A session over the site's serialized TensorRT engine: an in-memory ONNX model (ONNX Runtime's model editor API)
// of one com.microsoft EPContext node that embeds the engine (embed_mode 1), so the TensorRT / NvTensorRTRTX
// provider deserializes the bundle's engine instead of building its own from the ONNX graph. The node's inputs
// and outputs are the site's, with a dynamic batch: the names the engine was built with from the same graph.
Ort::Session engine_session(Ort::Env& env, const Manifest& manifest, const SiteRecord& record, const Ort::SessionOptions& options,
                            const char* source) {
    const std::string path = manifest.path_of(record.engine->file);
    std::ifstream file(path, std::ios::binary);
    const std::string engine((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (!file.good() && !file.eof()) runtime_error("cannot read " + path);
    if (engine.size() > static_cast<std::size_t>(INT_MAX)) fail(FASTGEN_ERROR_UNSUPPORTED, path + " is over 2 GiB, more than an EPContext node holds");
    auto value_info = [&record](const TensorSpec& spec) {
        std::vector<std::int64_t> shape{-1};
        shape.insert(shape.end(), spec.shape.begin(), spec.shape.end());
        const std::vector<std::string> names(shape.size(), "batch");
        const Ort::TensorTypeAndShapeInfo tensor(element_type(spec.dtype, spec.name + " of site " + record.name), shape, &names);
        const Ort::TypeInfo type = Ort::TypeInfo::CreateTensorInfo(tensor.GetConst());
        return Ort::ValueInfo(spec.name, type.GetConst());
    };
    std::vector<Ort::ValueInfo> inputs, outputs;
    std::vector<std::string> input_names;
    for (const TensorSpec& spec : record.inputs) inputs.push_back(value_info(spec)), input_names.push_back(spec.name);
    outputs.push_back(value_info(record.output));
    const std::int64_t one = 1;
    std::vector<Ort::OpAttr> attributes;
    attributes.emplace_back("main_context", &one, 1, ORT_OP_ATTR_INT);
    attributes.emplace_back("embed_mode", &one, 1, ORT_OP_ATTR_INT);
    attributes.emplace_back("ep_cache_context", engine.data(), static_cast<int>(engine.size()), ORT_OP_ATTR_STRING);
    attributes.emplace_back("source", source, static_cast<int>(std::strlen(source)), ORT_OP_ATTR_STRING);
    Ort::Node node("EPContext", "com.microsoft", record.name + "_engine", input_names, {record.output.name}, attributes);
    Ort::Graph graph;
    graph.SetInputs(inputs);
    graph.SetOutputs(outputs);
    graph.AddNode(node);
    Ort::Model model({{"", 17}, {"com.microsoft", 1}});
    model.AddGraph(graph);
    return Ort::Session(env, model, options);
}

}  // namespace

namespace {

// The directory holding the kit's library.
std::string library_directory() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&library_directory), &info) == 0 || info.dli_fname == nullptr) return "";
    std::string path = info.dli_fname;
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

}  // namespace

std::vector<std::string> library_candidates(const char* variable, const std::vector<std::string>& names) {
    if (const char* value = std::getenv(variable); value && *value) return {value};
    std::vector<std::string> candidates{library_directory() + "/" + names.front()};
    candidates.insert(candidates.end(), names.begin(), names.end());
    return candidates;
}

void* open_first_library(const std::vector<std::string>& candidates, std::string& loaded, std::string& errors) {
    for (const std::string& candidate : candidates) {
        if (void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL)) {
            loaded = candidate;
            return handle;
        }
        errors += std::string(errors.empty() ? "" : "; ") + dlerror();
    }
    return nullptr;
}

Provider provider_from_name(const std::string& name) {
    if (name == "cpu") return Provider::cpu;
    if (name == "cuda") return Provider::cuda;
    if (name == "tensorrt") return Provider::tensorrt;
    if (name == "nv_tensorrt_rtx") return Provider::nv_tensorrt_rtx;
    argument_error("unknown execution provider '" + name + "'; choose one of cpu, cuda, tensorrt, nv_tensorrt_rtx");
}

bool provider_is_gpu(Provider provider) { return provider != Provider::cpu; }

std::string provider_name(Provider provider) {
    switch (provider) {
        case Provider::cpu: return "cpu";
        case Provider::cuda: return "cuda";
        case Provider::tensorrt: return "tensorrt";
        case Provider::nv_tensorrt_rtx: return "nv_tensorrt_rtx";
    }
    return "?";
}

std::string onnxruntime_version(const std::string& requested) {
    return load_library(requested).base->GetVersionString();
}

struct Site::State {
    Ort::Session session{nullptr};
    std::vector<ONNXTensorElementDataType> input_types;
    ONNXTensorElementDataType output_type{};
    Ort::MemoryInfo host_memory{nullptr}, device_memory{nullptr};  // device_memory: GPU providers only
    std::vector<std::vector<unsigned char>> staging;  // host inputs converted to the graph's types
    std::vector<unsigned char> output_staging;
};

Site::Site(const Manifest& manifest, const SiteRecord& record, const RuntimeOptions& options)
    : record_(record), state_(std::make_unique<State>()) {
    Library& lib = load_library(options.library);
    const std::string path = manifest.path_of(record.file);
    for (const TensorSpec& spec : record.inputs)
        state_->input_types.push_back(element_type(spec.dtype, "input " + spec.name + " of site " + record.name));
    state_->output_type = element_type(record.output.dtype, "output of site " + record.name);
    Ort::SessionOptions session_options{nullptr};
    try {
        session_options = Ort::SessionOptions();
        if (options.threads > 0) session_options.SetIntraOpNumThreads(options.threads);
        const std::string device = std::to_string(options.device);
        switch (options.provider) {
            case Provider::cpu: break;
            case Provider::cuda: {
                Ort::CUDAProviderOptions cuda;
                cuda.Update({{"device_id", device}});
                session_options.AppendExecutionProvider_CUDA_V2(*cuda);
                break;
            }
            case Provider::tensorrt: {
                Ort::TensorRTProviderOptions tensorrt;
                tensorrt.Update({{"device_id", device}});
                session_options.AppendExecutionProvider_TensorRT_V2(*tensorrt);
                break;
            }
            case Provider::nv_tensorrt_rtx: append_nv_tensorrt_rtx(*lib.env, session_options, options.device); break;
        }
    } catch (const Ort::Exception& error) {
        std::string message = error.what();
        runtime_error("execution provider " + provider_name(options.provider) + " is not available in ONNX Runtime " +
                      lib.base->GetVersionString() + " (" + message.substr(0, message.find('\n')).substr(0, 200) +
                      "); install an ONNX Runtime with it (e.g. pip install onnxruntime-gpu) or use provider cpu");
    }
    const char* source = record.engine ? engine_source(options.provider, record.engine->flavour) : "";
    if (*source) {
        try {
            state_->session = engine_session(*lib.env, manifest, record, session_options, source);
        } catch (const Ort::Exception& error) {
            std::string message = error.what();
            runtime_error(provider_name(options.provider) + " cannot run the engine " + record.engine->file + " (" +
                          message.substr(0, message.find('\n')).substr(0, 200) + "); it needs the TensorRT " + record.engine->version +
                          " it was built with and a GPU it targets (fastgen check BUNDLE), or re-export the bundle here");
        }
    }
    try {
        if (!*source) state_->session = Ort::Session(*lib.env, path.c_str(), session_options);
        state_->host_memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
        if (provider_is_gpu(options.provider))
            state_->device_memory = Ort::MemoryInfo("Cuda", OrtDeviceAllocator, options.device, OrtMemTypeDefault);
    } catch (const Ort::Exception& error) {
        std::string message = error.what();
        message = message.substr(0, message.find('\n')).substr(0, 200);
        runtime_error("onnxruntime cannot run " + record.file + " (" + message + "); for bf16 bundles use a GPU provider, or "
                      "re-export with precision fp32/fp16");
    }
}

Site::~Site() = default;

void Site::run(std::int64_t batch, const std::vector<const float*>& inputs, float* output) {
    if (inputs.size() != record_.inputs.size())
        fail(FASTGEN_ERROR_INTERNAL, "site " + record_.name + " takes " + std::to_string(record_.inputs.size()) + " inputs");
    state_->staging.resize(inputs.size());
    std::vector<const void*> typed;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const auto count = static_cast<std::size_t>(batch * elements(record_.inputs[i].shape));
        const ONNXTensorElementDataType type = state_->input_types[i];
        std::vector<unsigned char>& buffer = state_->staging[i];
        buffer.resize(count * element_size(type));
        convert_from_float(inputs[i], count, type, buffer.data());
        typed.push_back(buffer.data());
    }
    const auto count = static_cast<std::size_t>(batch * elements(record_.output.shape));
    void* out = output;
    if (state_->output_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        state_->output_staging.resize(count * element_size(state_->output_type));
        out = state_->output_staging.data();
    }
    bind_and_run(batch, typed, out, state_->host_memory);
    if (out != output) convert_to_float(out, count, state_->output_type, output);
}

void Site::run_device(std::int64_t batch, const std::vector<const void*>& inputs, void* output) {
    if (!state_->device_memory) fail(FASTGEN_ERROR_INTERNAL, "site " + record_.name + " was not opened with a GPU provider");
    bind_and_run(batch, inputs, output, state_->device_memory);
}

void Site::bind_and_run(std::int64_t batch, const std::vector<const void*>& inputs, void* output, const OrtMemoryInfo* memory) {
    if (inputs.size() != record_.inputs.size())
        fail(FASTGEN_ERROR_INTERNAL, "site " + record_.name + " takes " + std::to_string(record_.inputs.size()) + " inputs");
    try {
        Ort::IoBinding binding(state_->session);
        std::vector<Ort::Value> values;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const TensorSpec& spec = record_.inputs[i];
            std::vector<std::int64_t> shape{batch};
            shape.insert(shape.end(), spec.shape.begin(), spec.shape.end());
            const ONNXTensorElementDataType type = state_->input_types[i];
            const std::size_t bytes = static_cast<std::size_t>(elements(shape)) * element_size(type);
            values.push_back(Ort::Value::CreateTensor(memory, const_cast<void*>(inputs[i]), bytes, shape.data(), shape.size(), type));
            binding.BindInput(spec.name.c_str(), values.back());
        }
        std::vector<std::int64_t> shape{batch};
        shape.insert(shape.end(), record_.output.shape.begin(), record_.output.shape.end());
        const std::size_t bytes = static_cast<std::size_t>(elements(shape)) * element_size(state_->output_type);
        Ort::Value result = Ort::Value::CreateTensor(memory, output, bytes, shape.data(), shape.size(), state_->output_type);
        binding.BindOutput(record_.output.name.c_str(), result);
        state_->session.Run(Ort::RunOptions{nullptr}, binding);
    } catch (const Ort::Exception& error) {
        runtime_error("onnxruntime failed running site " + record_.name + " (" + record_.file + "): " + error.what());
    }
}

}  // namespace fastgen::kit
