#pragma once

#include <cstdint>
#include <string>
#include <vector>

// Writes 8-bit interleaved pixels (1 channel: gray, 3: RGB) as a PNG; throws std::runtime_error on failure.
void write_png(const std::string& path, int width, int height, int channels, const std::vector<std::uint8_t>& pixels);
