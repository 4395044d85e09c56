// fastgen-cpp-sample's argument parser: one strict unsigned parser for seeds and counts (no wrap, no sign, no space).
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>

#include "arguments.hpp"

namespace {

struct Case {
    const char* text;
    std::uint64_t largest;
    std::optional<std::uint64_t> expected;
};

class ParseUnsigned : public testing::TestWithParam<Case> {};

TEST_P(ParseUnsigned, TakesDigitsInRangeOnly) {
    const Case& c = GetParam();
    EXPECT_EQ(fastgen::app::parse_unsigned(c.text, c.largest), c.expected) << "'" << c.text << "'";
}

INSTANTIATE_TEST_SUITE_P(Seeds, ParseUnsigned,
                         testing::Values(Case{"0", UINT64_MAX, 0}, Case{"42", UINT64_MAX, 42},
                                         Case{"18446744073709551615", UINT64_MAX, UINT64_MAX},   // 2^64 − 1
                                         Case{"18446744073709551616", UINT64_MAX, std::nullopt},  // 2^64 wrapped before
                                         Case{"99999999999999999999", UINT64_MAX, std::nullopt},
                                         Case{"000000000000000000001", UINT64_MAX, std::nullopt},  // 21 characters
                                         Case{" -1", UINT64_MAX, std::nullopt},                    // strtoull: 2^64 − 1
                                         Case{"-1", UINT64_MAX, std::nullopt}, Case{"+1", UINT64_MAX, std::nullopt},
                                         Case{" 1", UINT64_MAX, std::nullopt}, Case{"1 ", UINT64_MAX, std::nullopt},
                                         Case{"0x10", UINT64_MAX, std::nullopt}, Case{"1e3", UINT64_MAX, std::nullopt},
                                         Case{"", UINT64_MAX, std::nullopt}));
INSTANTIATE_TEST_SUITE_P(Counts, ParseUnsigned,
                         testing::Values(Case{"9223372036854775807", INT64_MAX, INT64_MAX}, Case{"9223372036854775808", INT64_MAX, std::nullopt},
                                         Case{"2147483648", INT32_MAX, std::nullopt}, Case{"16", INT32_MAX, 16}));

}  // namespace
