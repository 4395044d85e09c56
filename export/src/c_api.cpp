// The C boundary: every entry point catches everything, stores the message for fastgen_last_error and returns
// a status. The handle is an opened Session.
#include <fastgen/fastgen.h>

#include <cmath>
#include <memory>
#include <new>
#include <string>

#include "error.hpp"
#include "session.hpp"

using namespace fastgen::kit;

struct fastgen_bundle {
    std::unique_ptr<Session> session;
    fastgen_progress_callback progress = nullptr;
    void* progress_data = nullptr;
    std::vector<float> images;  // fastgen_sample_u8's float images
};

namespace {

thread_local std::string last_error;

template <class Body>
fastgen_status guarded(Body&& body) noexcept {
    try {
        body();
        return FASTGEN_OK;
    } catch (const Failure& failure) {
        last_error = failure.what();
        return failure.status;
    } catch (const std::bad_alloc&) {
        last_error = "out of memory; sample fewer images per call";
        return FASTGEN_ERROR_OUT_OF_MEMORY;
    } catch (const std::exception& error) {
        last_error = std::string("internal error: ") + error.what() + "; please report it";
        return FASTGEN_ERROR_INTERNAL;
    } catch (...) {
        last_error = "internal error (unknown exception); please report it";
        return FASTGEN_ERROR_INTERNAL;
    }
}

void require(const void* pointer, const char* what) {
    if (pointer == nullptr) argument_error(std::string(what) + " must not be NULL");
}

// What every sampling call checks before any work: a bundle, n ≥ 1 and a `buffer` of `count` `unit`s for n images.
void check_batch(const fastgen_bundle* bundle, std::int64_t n, const void* buffer, const char* name, std::size_t count, const char* unit) {
    require(bundle, "bundle");
    require(buffer, name);
    if (n < 1) argument_error("the number of images must be ≥ 1, got " + std::to_string(n));
    const auto per_image = static_cast<std::uint64_t>(bundle->session->image_elements());
    if (count / per_image < static_cast<std::uint64_t>(n)) {  // by division: n · per_image may overflow
        const unsigned __int128 needed = static_cast<unsigned __int128>(n) * per_image;
        const std::string need = needed > UINT64_MAX ? "more than 2^64" : std::to_string(static_cast<std::uint64_t>(needed));
        argument_error("the buffer holds " + std::to_string(count) + " " + unit + "; " + std::to_string(n) + " images need " + need);
    }
    bundle->session->check_memory(n);
}

// fastgen_sample_rows*'s rows (n already checked).
Rows given_rows(std::int64_t n, const std::uint64_t* seeds, const std::uint64_t* indices) {
    require(seeds, "seeds");
    require(indices, "indices");
    return Rows{std::vector<std::uint64_t>(seeds, seeds + n), std::vector<std::uint64_t>(indices, indices + n)};
}

void sample_floats(fastgen_bundle* bundle, const Rows& rows, float* images) {
    Progress progress;
    if (bundle->progress != nullptr)
        progress = [bundle](std::int64_t done, std::int64_t total) { bundle->progress(done, total, bundle->progress_data); };
    bundle->session->sample(rows, images, progress);
}

void sample_pixels(fastgen_bundle* bundle, const Rows& rows, std::uint8_t* pixels) {
    const std::vector<std::int64_t>& shape = output_shape(bundle->session->program);
    bundle->images.resize(static_cast<std::size_t>(rows.size() * bundle->session->image_elements()));
    sample_floats(bundle, rows, bundle->images.data());
    fastgen_images_to_u8(bundle->images.data(), rows.size(), shape[0], shape[1], shape[2], pixels);
}

}  // namespace

extern "C" {

void fastgen_options_init(fastgen_options* options) {
    if (options == nullptr) return;
    options->provider = "cpu";
    options->threads = 0;
    options->device = 0;
    options->verify = 1;
    options->onnxruntime_library = nullptr;
}

fastgen_status fastgen_open(const char* path, const fastgen_options* options, fastgen_bundle** bundle) {
    return guarded([&] {
        require(bundle, "bundle");
        *bundle = nullptr;
        require(path, "path");
        fastgen_options defaults;
        fastgen_options_init(&defaults);
        const fastgen_options& chosen = options != nullptr ? *options : defaults;
        if (chosen.threads < 0) argument_error("threads must be ≥ 0 (0: ONNX Runtime's default), got " + std::to_string(chosen.threads));
        RuntimeOptions runtime;
        runtime.provider = provider_from_name(chosen.provider != nullptr ? chosen.provider : "cpu");
        runtime.threads = chosen.threads;
        runtime.device = chosen.device;
        runtime.library = chosen.onnxruntime_library != nullptr ? chosen.onnxruntime_library : "";
        auto opened = std::make_unique<fastgen_bundle>();
        opened->session = Session::open(path, runtime, chosen.verify != 0);
        *bundle = opened.release();
    });
}

void fastgen_close(fastgen_bundle* bundle) { delete bundle; }

fastgen_status fastgen_set_progress(fastgen_bundle* bundle, fastgen_progress_callback callback, void* user_data) {
    return guarded([&] {
        require(bundle, "bundle");
        bundle->progress = callback;
        bundle->progress_data = user_data;
    });
}

const char* fastgen_last_error(void) { return last_error.c_str(); }

fastgen_status fastgen_image_shape(const fastgen_bundle* bundle, int64_t* channels, int64_t* height, int64_t* width) {
    return guarded([&] {
        require(bundle, "bundle");
        const std::vector<std::int64_t>& shape = output_shape(bundle->session->program);
        if (channels) *channels = shape[0];
        if (height) *height = shape[1];
        if (width) *width = shape[2];
    });
}

const char* fastgen_family(const fastgen_bundle* bundle) { return bundle ? bundle->session->manifest.family.c_str() : ""; }

const char* fastgen_precision(const fastgen_bundle* bundle) { return bundle ? bundle->session->manifest.precision.c_str() : ""; }

fastgen_status fastgen_max_batch(const fastgen_bundle* bundle, int64_t* max_batch) {
    return guarded([&] {
        require(bundle, "bundle");
        require(max_batch, "max_batch");
        *max_batch = bundle->session->runs_engines() ? bundle->session->manifest.batch.max : 0;
    });
}

fastgen_status fastgen_sample(fastgen_bundle* bundle, int64_t n, uint64_t seed, float* images, size_t count) {
    return guarded([&] {
        check_batch(bundle, n, images, "images", count, "values");
        sample_floats(bundle, Rows::of_seed(seed, n), images);
    });
}

fastgen_status fastgen_sample_u8(fastgen_bundle* bundle, int64_t n, uint64_t seed, uint8_t* pixels, size_t count) {
    return guarded([&] {
        check_batch(bundle, n, pixels, "pixels", count, "bytes");
        sample_pixels(bundle, Rows::of_seed(seed, n), pixels);
    });
}

fastgen_status fastgen_sample_rows(fastgen_bundle* bundle, int64_t n, const uint64_t* seeds, const uint64_t* indices, float* images,
                                   size_t count) {
    return guarded([&] {
        check_batch(bundle, n, images, "images", count, "values");
        sample_floats(bundle, given_rows(n, seeds, indices), images);
    });
}

fastgen_status fastgen_sample_rows_u8(fastgen_bundle* bundle, int64_t n, const uint64_t* seeds, const uint64_t* indices, uint8_t* pixels,
                                      size_t count) {
    return guarded([&] {
        check_batch(bundle, n, pixels, "pixels", count, "bytes");
        sample_pixels(bundle, given_rows(n, seeds, indices), pixels);
    });
}

void fastgen_images_to_u8(const float* images, int64_t n, int64_t channels, int64_t height, int64_t width, uint8_t* pixels) {
    // The manifest's normalisation: clamp(round((x + 1) · 127.5), 0, 255), round half to even as torch.round.
    const std::int64_t plane = height * width;
    for (std::int64_t image = 0; image < n; ++image)
        for (std::int64_t c = 0; c < channels; ++c)
            for (std::int64_t i = 0; i < plane; ++i) {
                const float value = std::nearbyint((images[(image * channels + c) * plane + i] + 1.0f) * 127.5f);
                const float clamped = value >= 0.0f ? (value <= 255.0f ? value : 255.0f) : 0.0f;  // NaN → 0
                pixels[(image * plane + i) * channels + c] = static_cast<uint8_t>(clamped);
            }
}

const char* fastgen_version(void) { return FASTGEN_VERSION_STRING; }

int fastgen_bundle_format_version(void) { return kFormatVersion; }

}  // extern "C"
