// consumer_cpp BUNDLE: the same as main.c through the C++ wrapper (RAII, exceptions).
#include <fastgen/fastgen.hpp>

#include <iostream>
#include <numeric>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " BUNDLE\n";
        return 2;
    }
    try {
        fastgen::Bundle bundle(argv[1]);
        const std::vector<float> images = bundle.sample(2, 0);
        const fastgen::ImageShape shape = bundle.image_shape();
        std::cout << bundle.family() << " " << shape.channels << "x" << shape.height << "x" << shape.width << " mean "
                  << std::accumulate(images.begin(), images.end(), 0.0) / images.size() << "\n";
    } catch (const fastgen::Error& error) {
        std::cerr << "error: " << error.what() << "\n";
        return 1;
    }
    return 0;
}
