# The GPU path, compiled by nvcc: the program's step kernels over device buffers, from the same headers as the
# CPU path (fastgen/kernels/*.cuh). Compile-only where no GPU is lent; cuFFT is not linked yet (see README).
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "52")
  set(CMAKE_CUDA_ARCHITECTURES 80 90)
endif()
add_library(fastgen_gpu_ops STATIC src/gpu_ops.cu)
target_include_directories(fastgen_gpu_ops PRIVATE ${FASTGEN_KERNEL_DIR} ${PROJECT_SOURCE_DIR}/src)
set_target_properties(fastgen_gpu_ops PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_SEPARABLE_COMPILATION OFF)
target_link_libraries(fastgen_gpu_ops PUBLIC CUDA::cudart_static)
target_link_libraries(fastgen_runtime PRIVATE fastgen_gpu_ops)
