/* fastgen's C API: open a fastgen bundle and sample images, identical to `fastgen sample BUNDLE` for a seed.
 *
 *   fastgen_options options;
 *   fastgen_options_init(&options);                      // CPU, ONNX Runtime's default threads
 *   fastgen_bundle* bundle = NULL;
 *   if (fastgen_open("bundle/", &options, &bundle) != FASTGEN_OK) puts(fastgen_last_error());
 *   fastgen_sample(bundle, 16, 0, images, count);         // [16, C, H, W] float in [-1, 1]
 *   fastgen_close(bundle);
 *
 * Every function returns a status; on failure fastgen_last_error() gives one line saying what is wrong and what
 * to do (per thread, until the next failing call on that thread). No C++ exception crosses this boundary.
 * A bundle handle may be used by one thread at a time. */
#ifndef FASTGEN_FASTGEN_H
#define FASTGEN_FASTGEN_H

#include <stddef.h>
#include <stdint.h>

#if defined(FASTGEN_BUILDING)
#define FASTGEN_API __attribute__((visibility("default")))
#else
#define FASTGEN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fastgen_status {
    FASTGEN_OK = 0,
    FASTGEN_ERROR_ARGUMENT = 1,    /* a bad argument: null pointer, buffer too small, n outside the bundle's range */
    FASTGEN_ERROR_BUNDLE = 2,      /* the bundle is missing, altered, of an unknown version or malformed */
    FASTGEN_ERROR_RUNTIME = 3,     /* ONNX Runtime (or CUDA) failed: library missing, provider unavailable, run error */
    FASTGEN_ERROR_UNSUPPORTED = 4, /* asked for something this build cannot do (a provider, an op, a precision) */
    FASTGEN_ERROR_INTERNAL = 5,    /* a bug: please report it with the message */
    FASTGEN_ERROR_OUT_OF_MEMORY = 6 /* the sample does not fit in the memory left (estimated before any work): fewer images */
} fastgen_status;

typedef struct fastgen_bundle fastgen_bundle; /* opaque */

typedef struct fastgen_options {
    /* "cpu", "cuda", "tensorrt" (the bundle's graphs through ORT's TensorRT provider) or "nv_tensorrt_rtx". */
    const char* provider;
    int threads;        /* ONNX Runtime intra-op threads on the CPU; 0 = ONNX Runtime's default */
    int device;         /* CUDA device index for GPU providers */
    int verify;         /* nonzero (the default): check every file's SHA-256 against the manifest before use */
    /* libonnxruntime.so to load; NULL = $FASTGEN_ONNXRUNTIME_LIBRARY, else libonnxruntime.so.1 next to this
     * library, else the system's search path. */
    const char* onnxruntime_library;
} fastgen_options;

/* Defaults: provider "cpu", threads 0, device 0, verify 1, onnxruntime_library NULL. */
FASTGEN_API void fastgen_options_init(fastgen_options* options);

/* Opens the bundle directory `path`; options may be NULL (the defaults). On failure *bundle stays NULL. */
FASTGEN_API fastgen_status fastgen_open(const char* path, const fastgen_options* options, fastgen_bundle** bundle);
FASTGEN_API void fastgen_close(fastgen_bundle* bundle); /* NULL is fine */

/* Called by fastgen_sample* after each network call: calls made so far, calls in the whole sample. The callback
 * must not throw (it runs inside the library) and must not call back into this bundle. NULL: no progress. */
typedef void (*fastgen_progress_callback)(int64_t calls_done, int64_t calls_total, void* user_data);
FASTGEN_API fastgen_status fastgen_set_progress(fastgen_bundle* bundle, fastgen_progress_callback callback, void* user_data);

/* The calling thread's message for its last failing call ("" if none). */
FASTGEN_API const char* fastgen_last_error(void);

/* Image shape: channels, height, width of one sample. */
FASTGEN_API fastgen_status fastgen_image_shape(const fastgen_bundle* bundle, int64_t* channels, int64_t* height,
                                               int64_t* width);
/* "udpm", "ddpm", "pddpm", "blur"; "fp32", "fp16", "bf16". Valid while the bundle is open. */
FASTGEN_API const char* fastgen_family(const fastgen_bundle* bundle);
FASTGEN_API const char* fastgen_precision(const fastgen_bundle* bundle);
/* The largest n one fastgen_sample call takes (the engines' profile maximum; 0 = any). */
FASTGEN_API fastgen_status fastgen_max_batch(const fastgen_bundle* bundle, int64_t* max_batch);

/* n images for `seed` as float NCHW in [-1, 1] into `images` (capacity `count` floats, at least n·C·H·W). */
FASTGEN_API fastgen_status fastgen_sample(fastgen_bundle* bundle, int64_t n, uint64_t seed, float* images, size_t count);
/* The same images as 8-bit NHWC (interleaved channels, what image files take): clamp(round((x + 1) · 127.5), 0, 255). */
FASTGEN_API fastgen_status fastgen_sample_u8(fastgen_bundle* bundle, int64_t n, uint64_t seed, uint8_t* pixels,
                                             size_t count);

/* Per-row seeds (e.g. a server batching requests): row r of the n images is image indices[r] of seeds[r]'s
 * sequence, bit-identical to image indices[r] of fastgen_sample(seed = seeds[r], n > indices[r]) whatever else is in
 * the batch; fastgen_sample(n, seed) is the rows (seed, 0 … n − 1). seeds and indices hold n words each. An index
 * whose noise elements (index × the elements per image of the program's largest buffer) leave 64 bits is refused
 * (FASTGEN_ERROR_ARGUMENT). */
FASTGEN_API fastgen_status fastgen_sample_rows(fastgen_bundle* bundle, int64_t n, const uint64_t* seeds, const uint64_t* indices,
                                               float* images, size_t count);
FASTGEN_API fastgen_status fastgen_sample_rows_u8(fastgen_bundle* bundle, int64_t n, const uint64_t* seeds, const uint64_t* indices,
                                                  uint8_t* pixels, size_t count);

/* float NCHW images → 8-bit NHWC, as fastgen_sample_u8 quantises them (`pixels` holds n·C·H·W bytes). */
FASTGEN_API void fastgen_images_to_u8(const float* images, int64_t n, int64_t channels, int64_t height, int64_t width,
                                      uint8_t* pixels);

/* Version of this library, "MAJOR.MINOR.PATCH", and the bundle format version it reads. */
FASTGEN_API const char* fastgen_version(void);
FASTGEN_API int fastgen_bundle_format_version(void);

#ifdef __cplusplus
}
#endif
#endif
