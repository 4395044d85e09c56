// The kit's one internal exception: a C API status and the one-line message fastgen_last_error() returns.
#pragma once

#include <fastgen/fastgen.h>

#include <stdexcept>
#include <string>

namespace fastgen::kit {

class Failure : public std::runtime_error {
public:
    Failure(fastgen_status status, const std::string& message) : std::runtime_error(message), status(status) {}
    fastgen_status status;
};

[[noreturn]] inline void fail(fastgen_status status, const std::string& message) { throw Failure(status, message); }
[[noreturn]] inline void bundle_error(const std::string& message) { fail(FASTGEN_ERROR_BUNDLE, message); }
[[noreturn]] inline void argument_error(const std::string& message) { fail(FASTGEN_ERROR_ARGUMENT, message); }

}  // namespace fastgen::kit
