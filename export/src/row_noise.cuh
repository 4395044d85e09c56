// Per-row noise keys (export/PROGRAM.md): row r of a batch is image index_r of seed seed_r, so its P elements of a
// draw are elements index_r·P … index_r·P + P − 1 of that draw's stream under seed_r. A run of elements may start
// inside a counter (P need not be a multiple of 4); these helpers, compiled by g++ (ops.cpp) and nvcc (gpu_ops.cu),
// write the lanes of one counter that fall inside the run, so both paths number counters the same way.
#pragma once
#include "philox.cuh"

// Counters a run of `count` elements starting at element `first` touches.
FG_HD long long fg_run_counters(fg_u64 first, long long count) { return (static_cast<long long>(first & 3u) + count + 3) / 4; }

// The normals of counter c (0-based within the run) that fall inside the run, written to out[element − first].
FG_HD void fg_run_counter(fg_u64 seed, fg_u64 offset, fg_u64 first, long long count, long long c, float* out) {
    float n[4];
    fg_normal4(seed, offset, (first >> 2) + static_cast<fg_u64>(c), n);
    for (int k = 0; k < 4; ++k) {
        const long long element = 4 * c + k - static_cast<long long>(first & 3u);  // within the run
        if (element >= 0 && element < count) out[element] = n[k];
    }
}
