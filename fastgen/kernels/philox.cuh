// Counter-based Gaussian noise: Philox4x32-10 (Salmon et al., SC'11; the Random123 reference) + Box–Muller.
//
// Noise contract, mirrored bit for bit by fastgen/kernels/philox.py (the tests hold the two together):
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (index & 0xffffffff, index >> 32, offset & 0xffffffff, offset >> 32)
// One counter gives four 32-bit words (x, y, z, w) and so four normals: Box–Muller on (x, y) and on (z, w).
// A kernel numbers its counters 0, 1, 2, … in a documented layout; a new `offset` per launch gives fresh
// noise, the same (seed, offset) gives the same noise on any GPU and in the Python mirror.
#pragma once
#include "common.cuh"

#define FG_PHILOX_M0 0xD2511F53u
#define FG_PHILOX_M1 0xCD9E8D57u
#define FG_PHILOX_W0 0x9E3779B9u
#define FG_PHILOX_W1 0xBB67AE85u

__host__ __device__ __forceinline__ fg_u32 fg_mulhi(fg_u32 a, fg_u32 b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return static_cast<fg_u32>((static_cast<fg_u64>(a) * b) >> 32);
#endif
}

__host__ __device__ __forceinline__ uint4 fg_philox_round(uint4 c, uint2 k) {
    const fg_u32 hi0 = fg_mulhi(FG_PHILOX_M0, c.x), lo0 = FG_PHILOX_M0 * c.x;
    const fg_u32 hi1 = fg_mulhi(FG_PHILOX_M1, c.z), lo1 = FG_PHILOX_M1 * c.z;
    return make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

// Philox4x32 with 10 rounds; the key is bumped between rounds (Random123's schedule).
__host__ __device__ __forceinline__ uint4 fg_philox4x32_10(uint4 counter, uint2 key) {
    counter = fg_philox_round(counter, key);
#pragma unroll
    for (int round = 1; round < 10; ++round) {
        key.x += FG_PHILOX_W0;
        key.y += FG_PHILOX_W1;
        counter = fg_philox_round(counter, key);
    }
    return counter;
}

// Two normals from two words. The uniforms use the top 24 bits so they are exact in fp32 (and in the
// float64 mirror): u in (0, 1] keeps log finite, v in [0, 1) is the angle. Tails are cut at 5.77σ.
__device__ __forceinline__ float2 fg_box_muller(fg_u32 a, fg_u32 b) {
    const float u = static_cast<float>((a >> 8) + 1u) * 0x1p-24f;
    const float v = static_cast<float>(b >> 8) * 0x1p-24f;
    const float r = sqrtf(-2.0f * logf(u));
    float s, c;
    sincospif(2.0f * v, &s, &c);
    return make_float2(r * c, r * s);
}

__device__ __forceinline__ uint4 fg_philox_bits(fg_u64 seed, fg_u64 offset, fg_u64 index) {
    return fg_philox4x32_10(
        make_uint4(static_cast<fg_u32>(index), static_cast<fg_u32>(index >> 32), static_cast<fg_u32>(offset),
                   static_cast<fg_u32>(offset >> 32)),
        make_uint2(static_cast<fg_u32>(seed), static_cast<fg_u32>(seed >> 32)));
}

// The four normals of counter `index`.
__device__ __forceinline__ void fg_normal4(fg_u64 seed, fg_u64 offset, fg_u64 index, float (&n)[4]) {
    const uint4 bits = fg_philox_bits(seed, offset, index);
    const float2 a = fg_box_muller(bits.x, bits.y), b = fg_box_muller(bits.z, bits.w);
    n[0] = a.x; n[1] = a.y; n[2] = b.x; n[3] = b.y;
}

// The first pair of normals of counter `index` (spectral kernels need two per frequency).
__device__ __forceinline__ float2 fg_normal2(fg_u64 seed, fg_u64 offset, fg_u64 index) {
    const uint4 bits = fg_philox_bits(seed, offset, index);
    return fg_box_muller(bits.x, bits.y);
}
