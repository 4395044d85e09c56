# Everything the kit builds against. ONNX Runtime: headers from ../.deps (setup.sh), library from the wheel.
include(GNUInstallDirs)
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
find_package(PNG REQUIRED)

# The per-element step maths and Philox live with the CUDA kernels; the kit compiles the same headers.
set(FASTGEN_KERNEL_DIR ${PROJECT_SOURCE_DIR}/../fastgen/kernels)

set(FASTGEN_ORT_INCLUDE_DIR ${PROJECT_SOURCE_DIR}/../.deps/onnxruntime/include CACHE PATH
    "ONNX Runtime C/C++ headers (../setup.sh unpacks Debian's libonnxruntime-dev there)")
if(NOT EXISTS ${FASTGEN_ORT_INCLUDE_DIR}/onnxruntime_cxx_api.h)
  message(FATAL_ERROR "ONNX Runtime headers not found in ${FASTGEN_ORT_INCLUDE_DIR}: run ./setup.sh, "
                      "or pass -DFASTGEN_ORT_INCLUDE_DIR=DIR with onnxruntime_cxx_api.h")
endif()

find_path(FASTGEN_KISSFFT_INCLUDE_DIR kissfft.hh PATH_SUFFIXES kissfft)
if(NOT FASTGEN_KISSFFT_INCLUDE_DIR)
  message(FATAL_ERROR "kissfft.hh (BSD-3-Clause, header-only use) not found: apt-get install libkissfft-dev (./setup.sh)")
endif()

# ONNX Runtime's library: the active python3's onnxruntime wheel (onnxruntime/capi/libonnxruntime.so.1.x).
find_package(Python3 COMPONENTS Interpreter)
set(FASTGEN_ORT_LIBRARY "" CACHE FILEPATH "libonnxruntime.so.1.x to load at run time (default: the python3 onnxruntime wheel's)")
if(NOT FASTGEN_ORT_LIBRARY AND Python3_Interpreter_FOUND)
  execute_process(COMMAND ${Python3_EXECUTABLE} -c "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))"
                  OUTPUT_VARIABLE _ort_package OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _ort_result ERROR_QUIET)
  if(_ort_result EQUAL 0)
    file(GLOB _ort_candidates ${_ort_package}/capi/libonnxruntime.so.1*)
    if(_ort_candidates)
      list(SORT _ort_candidates)
      list(GET _ort_candidates -1 _ort_library)
      set(FASTGEN_ORT_LIBRARY ${_ort_library} CACHE FILEPATH "" FORCE)
    endif()
  endif()
endif()
if(NOT EXISTS "${FASTGEN_ORT_LIBRARY}")
  message(FATAL_ERROR "ONNX Runtime library not found: pip install onnxruntime for ${Python3_EXECUTABLE} (./setup.sh), "
                      "or pass -DFASTGEN_ORT_LIBRARY=/path/to/libonnxruntime.so.1.x")
endif()
get_filename_component(FASTGEN_ORT_LIBRARY_DIR ${FASTGEN_ORT_LIBRARY} DIRECTORY)
# The wheel has no libonnxruntime.so.1 link; the kit loads that name next to itself. The provider libraries
# (CUDA, TensorRT, shared) are looked up by ONNX Runtime next to the core library, so they are linked too.
file(GLOB FASTGEN_ORT_PROVIDER_LIBRARIES ${FASTGEN_ORT_LIBRARY_DIR}/libonnxruntime_providers_*.so)
file(CREATE_LINK ${FASTGEN_ORT_LIBRARY} ${PROJECT_BINARY_DIR}/libonnxruntime.so.1 SYMBOLIC)
foreach(_provider IN LISTS FASTGEN_ORT_PROVIDER_LIBRARIES)
  get_filename_component(_name ${_provider} NAME)
  file(CREATE_LINK ${_provider} ${PROJECT_BINARY_DIR}/${_name} SYMBOLIC)
endforeach()
message(STATUS "fastgen: ONNX Runtime headers ${FASTGEN_ORT_INCLUDE_DIR}, library ${FASTGEN_ORT_LIBRARY}")

# The GPU path: nvcc (CUDA 13 lives in /usr/local/cuda-13.0 here, not on PATH).
if(FASTGEN_CUDA STREQUAL "AUTO")
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(_nvcc nvcc HINTS ENV CUDA_PATH PATHS /usr/local/cuda/bin /usr/local/cuda-13.0/bin NO_CACHE)
    if(_nvcc)
      set(CMAKE_CUDA_COMPILER ${_nvcc})
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  set(FASTGEN_WITH_CUDA ${CMAKE_CUDA_COMPILER})
else()
  set(FASTGEN_WITH_CUDA ${FASTGEN_CUDA})
endif()
if(FASTGEN_WITH_CUDA)
  set(FASTGEN_WITH_CUDA ON)
else()
  set(FASTGEN_WITH_CUDA OFF)
endif()

# The GPU path's FFTs: cuFFT's headers at build time, its library (libcufft.so.12, CUDA 13's) loaded at run time
# (src/gpu_fft.cpp), never linked. Headers and library are looked for in a CUDA toolkit, in ../.deps/cufft (which
# ../setup.sh unpacks from PyPI's nvidia-cufft wheel), and in the active python3's nvidia-cufft wheel, in that order.
if(FASTGEN_WITH_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)  # the fused kernels' targets (sm_80 and newer); the H100/H200 are sm_90
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  set(_cufft_roots ${PROJECT_SOURCE_DIR}/../.deps/cufft)
  if(Python3_Interpreter_FOUND)
    execute_process(COMMAND ${Python3_EXECUTABLE} -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13'))"
                    OUTPUT_VARIABLE _nvidia_wheels OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _nvidia_result ERROR_QUIET)
    if(_nvidia_result EQUAL 0)
      list(APPEND _cufft_roots ${_nvidia_wheels})
    endif()
  endif()
  list(TRANSFORM _cufft_roots APPEND /include OUTPUT_VARIABLE _cufft_include_dirs)
  list(TRANSFORM _cufft_roots APPEND /lib OUTPUT_VARIABLE _cufft_library_dirs)
  find_path(FASTGEN_CUFFT_INCLUDE_DIR cufft.h PATHS ${CUDAToolkit_INCLUDE_DIRS} ${_cufft_include_dirs} NO_DEFAULT_PATH)
  find_file(FASTGEN_CUFFT_LIBRARY libcufft.so.12 PATHS ${CUDAToolkit_LIBRARY_DIR} ${_cufft_library_dirs} NO_DEFAULT_PATH)
  if(NOT FASTGEN_CUFFT_INCLUDE_DIR)
    list(JOIN _cufft_include_dirs " " _searched)
    set(_no_cufft "cufft.h not found in ${CUDAToolkit_INCLUDE_DIRS} ${_searched}: run ./setup.sh (it unpacks the nvidia-cufft wheel's headers into .deps/cufft), or pass -DFASTGEN_CUFFT_INCLUDE_DIR=DIR")
    if(FASTGEN_CUDA STREQUAL "AUTO")
      message(WARNING "fastgen: the GPU path is off: ${_no_cufft}")
      set(FASTGEN_WITH_CUDA OFF)
    else()
      message(FATAL_ERROR "${_no_cufft}")
    endif()
  else()
    set(_cufft_found "no libcufft.so.12 found; the GPU path looks for it at run time")
    if(FASTGEN_CUFFT_LIBRARY)
      # The kit loads libcufft.so.12 from beside itself first (src/gpu_fft.cpp), so the build tree runs as is.
      file(CREATE_LINK ${FASTGEN_CUFFT_LIBRARY} ${PROJECT_BINARY_DIR}/libcufft.so.12 SYMBOLIC)
      set(_cufft_found "library ${FASTGEN_CUFFT_LIBRARY} (loaded at run time)")
    endif()
    message(STATUS "fastgen: cuFFT headers ${FASTGEN_CUFFT_INCLUDE_DIR}, ${_cufft_found}")
  endif()
endif()
