// Plans for the block kernels: filled by the pybind11 wrappers while the GIL is
// held, then read by the kernels without touching Python objects.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ecgk {

// One IIR stage: a cascade of `nsec` direct-form-II-transposed sections of
// order K (K = 2 for second-order sections, K = N for a single (b, a) filter).
// b and a are (nsec, K+1) with a[:, 0] == 1; zi is (nsec, K), the steady-state
// state for a unit step (scipy's sosfilt_zi / lfilter_zi), scaled by the first
// sample of each pass as scipy does.
struct Stage {
    int K = 2;
    int nsec = 0;
    std::vector<double> b, a, zi;
    std::ptrdiff_t padlen = 0;  // odd-extension length on each side (zero-phase only)
    bool zero_phase = true;
};

// Polyphase resampling plan (scipy.signal.resample_poly): output m is
// sum_j coef[j] * x[base[m] - off[j]] for j in [ph_start[phase[m]], ph_start[phase[m]+1]),
// with x zero outside [0, n_in). zl / zr: how far left of 0 / right of n_in-1 reads reach.
struct PolyPlan {
    std::vector<int64_t> base;
    std::vector<int32_t> phase, ph_start, off;
    std::vector<double> coef;
    std::vector<float> coef_f;
    std::ptrdiff_t zl = 0, zr = 0;
};

// Linear interpolation plan: out[j] = x[lo[j]] + w[j] * (x[lo[j]+1] - x[lo[j]]).
struct LinPlan {
    std::vector<int64_t> lo;
    std::vector<double> w;
};

struct ChainPlan {
    std::vector<Stage> stages;
    int resample = 0;  // 0 none, 1 polyphase, 2 linear
    PolyPlan poly;
    LinPlan lin;
    std::ptrdiff_t n_out = 0;
};

}  // namespace ecgk
