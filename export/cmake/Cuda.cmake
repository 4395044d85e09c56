# The GPU path: the step ops, compiled by nvcc from the same headers as the CPU path (fastgen/kernels/*.cuh) and
# tested against it (tests/gpu_ops_test.cpp, which skips without a GPU), the spectral ops on cuFFT (src/gpu_fft.cpp,
# the pointwise parts in src/gpu_spectral.cu), and the device-resident interpreter (src/gpu_program.cpp) that
# libfastgen_runtime runs when a bundle is opened with a GPU provider. Dependencies.cmake found nvcc and cufft.h.
set(CMAKE_CUDA_STANDARD 17)
add_library(fastgen_gpu_ops STATIC src/gpu_ops.cu src/gpu_spectral.cu)
target_include_directories(fastgen_gpu_ops PUBLIC ${FASTGEN_KERNEL_DIR} ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(fastgen_gpu_ops PUBLIC CUDA::cudart_static)
# No FMA contraction in the float64 spectral maths, as g++ compiles ops.cpp / fft.cpp: equal inputs, equal results.
set_source_files_properties(src/gpu_spectral.cu PROPERTIES COMPILE_OPTIONS --fmad=false)

target_sources(fastgen_kit PRIVATE src/gpu_program.cpp src/gpu_fft.cpp)
target_include_directories(fastgen_kit PRIVATE ${FASTGEN_CUFFT_INCLUDE_DIR})
target_compile_definitions(fastgen_kit PUBLIC FASTGEN_WITH_CUDA)
target_link_libraries(fastgen_kit PUBLIC fastgen_gpu_ops)
target_link_libraries(fastgen_runtime PRIVATE fastgen_gpu_ops)
