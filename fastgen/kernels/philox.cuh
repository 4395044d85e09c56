// Counter-based Gaussian noise: Philox4x32-10 (Salmon et al., SC'11; the Random123 reference) + Box–Muller.
//
// Noise contract, mirrored bit for bit by fastgen/kernels/philox.py (the tests hold the two together):
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (index & 0xffffffff, index >> 32, offset & 0xffffffff, offset >> 32)
// One counter gives four 32-bit words (x, y, z, w) and so four normals: Box–Muller on (x, y) and on (z, w).
// A kernel numbers its counters 0, 1, 2, … in a documented layout; a new `offset` per launch gives fresh
// noise, the same (seed, offset) gives the same noise on any GPU and in the Python mirror.
// Every function here is host + device (portable.cuh): the C++ kit's CPU path compiles this very header.
#pragma once
#include "portable.cuh"

#define FG_PHILOX_M0 0xD2511F53u
#define FG_PHILOX_M1 0xCD9E8D57u
#define FG_PHILOX_W0 0x9E3779B9u
#define FG_PHILOX_W1 0xBB67AE85u

FG_HD fg_u32 fg_mulhi(fg_u32 a, fg_u32 b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return static_cast<fg_u32>((static_cast<fg_u64>(a) * b) >> 32);
#endif
}

FG_HD fg_uint4 fg_philox_round(fg_uint4 c, fg_uint2 k) {
    const fg_u32 hi0 = fg_mulhi(FG_PHILOX_M0, c.x), lo0 = FG_PHILOX_M0 * c.x;
    const fg_u32 hi1 = fg_mulhi(FG_PHILOX_M1, c.z), lo1 = FG_PHILOX_M1 * c.z;
    return fg_make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

// Philox4x32 with 10 rounds; the key is bumped between rounds (Random123's schedule).
FG_HD fg_uint4 fg_philox4x32_10(fg_uint4 counter, fg_uint2 key) {
    counter = fg_philox_round(counter, key);
FG_UNROLL
    for (int round = 1; round < 10; ++round) {
        key.x += FG_PHILOX_W0;
        key.y += FG_PHILOX_W1;
        counter = fg_philox_round(counter, key);
    }
    return counter;
}

// Two normals from two words. The uniforms use the top 24 bits so they are exact in fp32 (and in the
// float64 mirror): u in (0, 1] keeps log finite, v in [0, 1) is the angle. Tails are cut at 5.77σ.
// On the GPU in float32; on the host in float64 rounded once, exactly as the Python reference computes them.
FG_HD fg_float2 fg_box_muller(fg_u32 a, fg_u32 b) {
#if defined(__CUDA_ARCH__)
    const float u = static_cast<float>((a >> 8) + 1u) * 0x1p-24f;
    const float v = static_cast<float>(b >> 8) * 0x1p-24f;
    const float r = sqrtf(-2.0f * logf(u));
    float s, c;
    sincospif(2.0f * v, &s, &c);
    return fg_make_float2(r * c, r * s);
#else
    const double u = static_cast<double>((a >> 8) + 1u) * 0x1p-24;
    const double v = static_cast<double>(b >> 8) * 0x1p-24;
    const double r = sqrt(-2.0 * log(u));
    const double angle = 6.283185307179586 * v;  // 2π·v as numpy rounds it
    return fg_make_float2(static_cast<float>(r * cos(angle)), static_cast<float>(r * sin(angle)));
#endif
}

FG_HD fg_uint4 fg_philox_bits(fg_u64 seed, fg_u64 offset, fg_u64 index) {
    return fg_philox4x32_10(
        fg_make_uint4(static_cast<fg_u32>(index), static_cast<fg_u32>(index >> 32), static_cast<fg_u32>(offset),
                   static_cast<fg_u32>(offset >> 32)),
        fg_make_uint2(static_cast<fg_u32>(seed), static_cast<fg_u32>(seed >> 32)));
}

// The four normals of counter `index`.
FG_HD void fg_normal4(fg_u64 seed, fg_u64 offset, fg_u64 index, float (&n)[4]) {
    const fg_uint4 bits = fg_philox_bits(seed, offset, index);
    const fg_float2 a = fg_box_muller(bits.x, bits.y), b = fg_box_muller(bits.z, bits.w);
    n[0] = a.x; n[1] = a.y; n[2] = b.x; n[3] = b.y;
}

// The first pair of normals of counter `index` (spectral kernels need two per frequency).
FG_HD fg_float2 fg_normal2(fg_u64 seed, fg_u64 offset, fg_u64 index) {
    const fg_uint4 bits = fg_philox_bits(seed, offset, index);
    return fg_box_muller(bits.x, bits.y);
}

// The sampling program's contract (export/PROGRAM.md): element e of draw d of op k is normal e & 3 of counter
// e >> 2 with offset (k << 32) | d.
FG_HD float fg_program_normal(fg_u64 seed, fg_u32 op, fg_u32 draw, fg_u64 element) {
    float n[4];
    fg_normal4(seed, (static_cast<fg_u64>(op) << 32) | draw, element >> 2, n);
    return n[element & 3];
}
