# The GPU path: the step ops, compiled by nvcc from the same headers as the CPU path (fastgen/kernels/*.cuh) and
# tested against it (tests/gpu_ops_test.cpp, which skips without a GPU), and the device-resident interpreter
# (src/gpu_program.cpp) that libfastgen_runtime runs when a bundle is opened with a GPU provider.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)  # the fused kernels' targets (sm_80 and newer); the H100/H200 are sm_90
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
add_library(fastgen_gpu_ops STATIC src/gpu_ops.cu)
target_include_directories(fastgen_gpu_ops PUBLIC ${FASTGEN_KERNEL_DIR} ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(fastgen_gpu_ops PUBLIC CUDA::cudart_static)

target_sources(fastgen_kit PRIVATE src/gpu_program.cpp)
target_compile_definitions(fastgen_kit PUBLIC FASTGEN_WITH_CUDA)
target_link_libraries(fastgen_kit PUBLIC fastgen_gpu_ops)
target_link_libraries(fastgen_runtime PRIVATE fastgen_gpu_ops)
