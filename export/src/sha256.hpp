#pragma once

#include <string>

namespace fastgen::kit {

// Lower-case hex SHA-256 of a file's bytes (OpenSSL); throws Failure(BUNDLE) if it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace fastgen::kit
