/* consumer_c BUNDLE: prints the mean of 2 images sampled with seed 0, through the C API. */
#include <fastgen/fastgen.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s BUNDLE\n", argv[0]);
        return 2;
    }
    fastgen_bundle* bundle = NULL;
    int64_t channels = 0, height = 0, width = 0;
    if (fastgen_open(argv[1], NULL, &bundle) != FASTGEN_OK || fastgen_image_shape(bundle, &channels, &height, &width) != FASTGEN_OK) {
        fprintf(stderr, "error: %s\n", fastgen_last_error());
        fastgen_close(bundle);
        return 1;
    }
    const size_t count = (size_t)(2 * channels * height * width);
    float* images = malloc(count * sizeof(float));
    if (images == NULL || fastgen_sample(bundle, 2, 0, images, count) != FASTGEN_OK) {
        fprintf(stderr, "error: %s\n", images ? fastgen_last_error() : "out of memory");
        free(images);
        fastgen_close(bundle);
        return 1;
    }
    double sum = 0.0;
    for (size_t i = 0; i < count; ++i) sum += images[i];
    printf("%s %lldx%lldx%lld mean %.6f\n", fastgen_family(bundle), (long long)channels, (long long)height, (long long)width, sum / count);
    free(images);
    fastgen_close(bundle);
    return 0;
}
