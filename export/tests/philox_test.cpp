// The shared Philox header compiled by the host compiler: Random123's known answers and the program's contract.
#include <gtest/gtest.h>

#include <philox.cuh>

#include <cmath>
#include <vector>

#include "ops.hpp"

TEST(Philox, MatchesRandom123KnownAnswers) {
    struct Case {
        fg_uint4 counter;
        fg_uint2 key;
        fg_uint4 expected;
    };
    const Case cases[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}, {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (const Case& c : cases) {
        const fg_uint4 got = fg_philox4x32_10(c.counter, c.key);
        EXPECT_EQ(got.x, c.expected.x);
        EXPECT_EQ(got.y, c.expected.y);
        EXPECT_EQ(got.z, c.expected.z);
        EXPECT_EQ(got.w, c.expected.w);
    }
}

TEST(Philox, BoxMullerFollowsTheContract) {
    // u = ((a >> 8) + 1)·2^-24, v = (b >> 8)·2^-24: a = 0xffffffff gives u = 1, so both normals are 0.
    const fg_float2 zero = fg_box_muller(0xffffffffu, 0x12345678u);
    EXPECT_EQ(zero.x, 0.0f);
    EXPECT_EQ(zero.y, 0.0f);
    // a = 0: u = 2^-24 (the largest radius, √(2·24·ln 2) ≈ 5.768); b = 0: angle 0, so (r, 0).
    const fg_float2 tail = fg_box_muller(0u, 0u);
    EXPECT_FLOAT_EQ(tail.x, static_cast<float>(std::sqrt(48.0 * std::log(2.0))));
    EXPECT_EQ(tail.y, 0.0f);
}

TEST(Philox, ProgramNoiseNumbersElementsByCounterAndOp) {
    const std::uint64_t seed = 0x123456789abcdefULL;
    std::vector<float> draw(10);
    fastgen::kit::draw_normals(seed, 3, 1, 0, 10, draw.data());
    for (std::uint64_t e = 0; e < 10; ++e) {
        float n[4];
        fg_normal4(seed, (3ULL << 32) | 1, e / 4, n);
        EXPECT_EQ(draw[e], n[e % 4]);
        EXPECT_EQ(draw[e], fg_program_normal(seed, 3, 1, e));
    }
    std::vector<float> other_op(10), other_draw(10);
    fastgen::kit::draw_normals(seed, 4, 1, 0, 10, other_op.data());
    fastgen::kit::draw_normals(seed, 3, 2, 0, 10, other_draw.data());
    EXPECT_NE(draw, other_op);
    EXPECT_NE(draw, other_draw);
}

// A batch row for image i starts at element i·P, often inside a counter; up to the stream's last element 2^64 − 1.
TEST(Philox, ProgramNoiseRunsStartAtAnyElement) {
    const std::uint64_t seed = 77;
    for (const std::uint64_t first : std::vector<std::uint64_t>{0, 1, 3, 6, 1001 * 5, 0xfffffffffffffff0ULL, UINT64_MAX - 8}) {
        for (const std::int64_t count : {1, 2, 5, 9}) {
            std::vector<float> run(static_cast<std::size_t>(count) + 1, -99.0f);
            fastgen::kit::draw_normals(seed, 2, 5, first, count, run.data());
            for (std::int64_t e = 0; e < count; ++e) EXPECT_EQ(run[e], fg_program_normal(seed, 2, 5, first + e)) << first << " + " << e;
            EXPECT_EQ(run[count], -99.0f) << "wrote past the run";
        }
    }
}
