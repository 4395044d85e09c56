// fastgen-cpp-sample's one number parser: every count, index and seed it takes is an unsigned decimal integer,
// digits only (no sign, no spaces, no hex), refused when out of range — never wrapped or clamped as strtoull does
// with "-1", " -1" or 2^64.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace fastgen::app {

inline std::optional<std::uint64_t> parse_unsigned(const std::string& text, std::uint64_t largest) {
    if (text.empty() || text.size() > 20) return std::nullopt;  // 2^64 − 1 has 20 digits
    std::uint64_t value = 0;
    for (const char digit : text) {
        if (digit < '0' || digit > '9') return std::nullopt;
        const auto next = static_cast<std::uint64_t>(digit - '0');
        if (value > (largest - next) / 10) return std::nullopt;  // value · 10 + next > largest
        value = value * 10 + next;
    }
    return value;
}

}  // namespace fastgen::app
