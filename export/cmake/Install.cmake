# cmake --install build/export --prefix PREFIX: headers, libfastgen_runtime, the example app, ONNX Runtime's
# library beside the kit's (where the kit looks first), and a package config for find_package(fastgen_runtime).
include(CMakePackageConfigHelpers)
set(FASTGEN_CONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/fastgen_runtime)

install(TARGETS fastgen_runtime EXPORT fastgen_runtimeTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS fastgen-cpp-sample RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/fastgen DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${FASTGEN_ORT_LIBRARY} DESTINATION ${CMAKE_INSTALL_LIBDIR} RENAME libonnxruntime.so.1)
install(FILES ${FASTGEN_ORT_PROVIDER_LIBRARIES} DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT fastgen_runtimeTargets NAMESPACE fastgen:: DESTINATION ${FASTGEN_CONFIG_DIR})
configure_package_config_file(cmake/fastgen_runtimeConfig.cmake.in ${PROJECT_BINARY_DIR}/fastgen_runtimeConfig.cmake
                              INSTALL_DESTINATION ${FASTGEN_CONFIG_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/fastgen_runtimeConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/fastgen_runtimeConfig.cmake ${PROJECT_BINARY_DIR}/fastgen_runtimeConfigVersion.cmake
        DESTINATION ${FASTGEN_CONFIG_DIR})
