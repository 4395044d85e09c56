// Header-only C++ wrapper of fastgen.h: RAII bundle handle, exceptions instead of status codes, span-style buffers.
//
//   fastgen::Bundle bundle("bundle/", fastgen::Options().provider("cpu").threads(2));
//   std::vector<float> images = bundle.sample(16, /*seed=*/0);   // [16, C, H, W] in [-1, 1]
//   std::vector<float> rows = bundle.sample_rows(seeds, indices); // row r: image indices[r] of seeds[r]
#pragma once

#include <fastgen/fastgen.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace fastgen {

// What every failing call throws: the C API's status and its one-line message.
class Error : public std::runtime_error {
public:
    Error(fastgen_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    fastgen_status status() const noexcept { return status_; }

private:
    fastgen_status status_;
};

namespace detail {
inline void check(fastgen_status status) {
    if (status != FASTGEN_OK) throw Error(status, fastgen_last_error());
}
}  // namespace detail

// A contiguous buffer the caller owns (C++17 stand-in for std::span): from a pointer + size or any container.
template <class T>
class Span {
public:
    Span(T* data, std::size_t size) : data_(data), size_(size) {}
    template <class Container>
    Span(Container& container) : data_(container.data()), size_(container.size()) {}  // NOLINT: implicit on purpose
    T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    T* data_;
    std::size_t size_;
};

class Options {
public:
    Options() { fastgen_options_init(&options_); }
    Options& provider(std::string name) { provider_ = std::move(name); return *this; }
    Options& threads(int count) { options_.threads = count; return *this; }
    Options& device(int index) { options_.device = index; return *this; }
    Options& verify(bool check) { options_.verify = check ? 1 : 0; return *this; }
    Options& onnxruntime_library(std::string path) { library_ = std::move(path); return *this; }
    // The C struct; valid while this Options lives.
    const fastgen_options* get() const {
        options_.provider = provider_.empty() ? nullptr : provider_.c_str();
        options_.onnxruntime_library = library_.empty() ? nullptr : library_.c_str();
        return &options_;
    }

private:
    mutable fastgen_options options_;
    std::string provider_ = "cpu", library_;
};

struct ImageShape {
    std::int64_t channels, height, width;
    std::int64_t elements() const noexcept { return channels * height * width; }
};

class Bundle {
public:
    explicit Bundle(const std::string& path, const Options& options = Options()) {
        detail::check(fastgen_open(path.c_str(), options.get(), &handle_));
    }
    Bundle(Bundle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Bundle& operator=(Bundle&& other) noexcept {
        if (this != &other) {
            fastgen_close(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    Bundle(const Bundle&) = delete;
    Bundle& operator=(const Bundle&) = delete;
    ~Bundle() { fastgen_close(handle_); }

    ImageShape image_shape() const {
        ImageShape shape{};
        detail::check(fastgen_image_shape(handle_, &shape.channels, &shape.height, &shape.width));
        return shape;
    }
    std::string family() const { return fastgen_family(handle_); }
    std::string precision() const { return fastgen_precision(handle_); }
    std::int64_t max_batch() const {
        std::int64_t batch = 0;
        detail::check(fastgen_max_batch(handle_, &batch));
        return batch;
    }

    // `callback(calls_done, calls_total, user_data)` after each network call of a sample (nullptr: none).
    void set_progress(fastgen_progress_callback callback, void* user_data = nullptr) {
        detail::check(fastgen_set_progress(handle_, callback, user_data));
    }

    // n images, float NCHW in [-1, 1], into `images` (at least n·C·H·W floats), or as a new vector.
    void sample(std::int64_t n, std::uint64_t seed, Span<float> images) {
        detail::check(fastgen_sample(handle_, n, seed, images.data(), images.size()));
    }
    std::vector<float> sample(std::int64_t n, std::uint64_t seed) {
        std::vector<float> images = buffer<float>(n);
        sample(n, seed, Span<float>(images));
        return images;
    }
    // The same images as 8-bit NHWC.
    void sample_u8(std::int64_t n, std::uint64_t seed, Span<std::uint8_t> pixels) {
        detail::check(fastgen_sample_u8(handle_, n, seed, pixels.data(), pixels.size()));
    }
    std::vector<std::uint8_t> sample_u8(std::int64_t n, std::uint64_t seed) {
        std::vector<std::uint8_t> pixels = buffer<std::uint8_t>(n);
        sample_u8(n, seed, Span<std::uint8_t>(pixels));
        return pixels;
    }

    // Per-row seeds: row r is image indices[r] of seeds[r] (fastgen_sample_rows); seeds and indices of one length.
    void sample_rows(Span<const std::uint64_t> seeds, Span<const std::uint64_t> indices, Span<float> images) {
        detail::check(fastgen_sample_rows(handle_, rows(seeds, indices), seeds.data(), indices.data(), images.data(), images.size()));
    }
    std::vector<float> sample_rows(Span<const std::uint64_t> seeds, Span<const std::uint64_t> indices) {
        std::vector<float> images = buffer<float>(rows(seeds, indices));
        sample_rows(seeds, indices, Span<float>(images));
        return images;
    }
    void sample_rows_u8(Span<const std::uint64_t> seeds, Span<const std::uint64_t> indices, Span<std::uint8_t> pixels) {
        detail::check(fastgen_sample_rows_u8(handle_, rows(seeds, indices), seeds.data(), indices.data(), pixels.data(), pixels.size()));
    }

    // float NCHW images of this bundle → 8-bit NHWC.
    std::vector<std::uint8_t> to_u8(const std::vector<float>& images) const {
        const ImageShape shape = image_shape();
        std::vector<std::uint8_t> pixels(images.size());
        fastgen_images_to_u8(images.data(), static_cast<std::int64_t>(images.size()) / shape.elements(), shape.channels, shape.height,
                             shape.width, pixels.data());
        return pixels;
    }

    fastgen_bundle* get() const noexcept { return handle_; }

private:
    // A buffer for n images: a size that cannot be allocated is an Error (OUT_OF_MEMORY), never std::bad_alloc or an
    // overflowed size; n < 1 gets an empty buffer and the C API's refusal.
    template <class T>
    std::vector<T> buffer(std::int64_t n) const {
        const auto elements = static_cast<std::uint64_t>(image_shape().elements());
        if (n < 1) return {};
        const char* message = "out of memory; sample fewer images per call";
        if (static_cast<std::uint64_t>(n) > std::vector<T>().max_size() / elements) throw Error(FASTGEN_ERROR_OUT_OF_MEMORY, message);
        try {
            return std::vector<T>(static_cast<std::size_t>(n) * static_cast<std::size_t>(elements));
        } catch (const std::bad_alloc&) {
            throw Error(FASTGEN_ERROR_OUT_OF_MEMORY, message);
        }
    }
    static std::int64_t rows(Span<const std::uint64_t> seeds, Span<const std::uint64_t> indices) {
        if (seeds.size() != indices.size())
            throw Error(FASTGEN_ERROR_ARGUMENT, "the rows have " + std::to_string(seeds.size()) + " seeds but " + std::to_string(indices.size()) +
                                                    " image indices");
        return static_cast<std::int64_t>(seeds.size());
    }
    fastgen_bundle* handle_ = nullptr;
};

}  // namespace fastgen
