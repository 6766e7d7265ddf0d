// ecgcore._kernels.medfilt: running median over each row with zero padding at
// both ends (scipy.signal.medfilt on a 1-D signal), optionally subtracted from
// the signal (median baseline removal).
//
// Windows shorter than MB_MIN_K_* run the in-register kernel of
// medkern_body.hpp (compiled for AVX-512, AVX2 and portable, picked at run
// time; up to 4 vectors it sweeps branch-free, beyond it branches on the sign
// of in - out); longer ones the block-sort kernel of medblock_body.hpp
// (Suomela's algorithm with a rank bit mask). On AVX-512 machines, float32
// windows of MS_MIN_K_F32..511 samples run medsort_body.hpp instead: the same
// algorithm with bitonic sorting and merging networks in zmm registers, blocks
// of 256 / 512 samples and a median walk that finds 16 outputs at a time
// (medfilt_walk16.hpp; ECGFounder's k = 201);
// unless `exact` is asked, windows of up to 255 samples sort 32-bit entries
// with keys quantised over the row's range, and return a sample within about
// range * 2^-23 of the exact median (see medsort_body.hpp). Every other path
// selects exactly scipy's sample. The older sorted-buffer path (two
// branch-free binary searches plus a short memmove per step) stays as the
// fallback when the register kernel has no build for the window size, and as
// method 2 for tests.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "blockkern.hpp"
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

#ifndef MB_MIN_K_F32
#define MB_MIN_K_F32 301
#endif
#ifndef MS_MIN_K_F32
#define MS_MIN_K_F32 129
#endif
#ifndef MB_MIN_K_F64
#define MB_MIN_K_F64 401
#endif

namespace ecgk {
#undef ECGK_VBYTES
#define ECGK_VBYTES 32
namespace portable {
#include "medkern_body.hpp"
#include "medblock_body.hpp"
}
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2,popcnt")
namespace avx2 {
#include "medkern_body.hpp"
#define ECGK_MB_PDEP 1
#include "medblock_body.hpp"
}
#pragma GCC pop_options
#undef ECGK_VBYTES
#define ECGK_VBYTES 64
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,bmi,bmi2,popcnt")
namespace avx512 {
#include "medkern_body.hpp"
#include "medblock_body.hpp"
#include "medsort_body.hpp"
#include "medfilt_walk16.hpp"
}
#pragma GCC pop_options
#undef ECGK_MB_PDEP
#endif
}  // namespace ecgk

namespace py = pybind11;

static bool median_row_fast(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    return ECGK_DISPATCH(median_rows_f32, x, y, n, k, s);
}
static bool median_row_fast(const double* x, double* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    return ECGK_DISPATCH(median_rows_f64, x, y, n, k, s);
}

// The block-sort kernel's word select wants BMI2 (pdep) and popcnt; the AVX2 and
// AVX-512 builds enable them, so they are only used where the CPU has both.
static int block_level() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    static const int lvl = (__builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt")) ? ecgk::simd_level() : 0;
    return lvl;
#else
    return 0;
#endif
}
template <class T>
static void median_row_block(const T* x, T* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    const int lvl = block_level();
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if constexpr (sizeof(T) == 4) {
        if (lvl == 2) return ecgk::avx512::median_rows_block_f32(x, y, n, k, s);
        if (lvl == 1) return ecgk::avx2::median_rows_block_f32(x, y, n, k, s);
        return ecgk::portable::median_rows_block_f32(x, y, n, k, s);
    } else {
        if (lvl == 2) return ecgk::avx512::median_rows_block_f64(x, y, n, k, s);
        if (lvl == 1) return ecgk::avx2::median_rows_block_f64(x, y, n, k, s);
        return ecgk::portable::median_rows_block_f64(x, y, n, k, s);
    }
#else
    (void)lvl;
    if constexpr (sizeof(T) == 4) ecgk::portable::median_rows_block_f32(x, y, n, k, s);
    else ecgk::portable::median_rows_block_f64(x, y, n, k, s);
#endif
}

// Kernel choice: 0 = automatic, 1 = sorted window in registers (branch-free
// sweep up to 4 vectors, else the branchy one), 2 = sorted buffer with memmove,
// 3 = block sort, 4 / 5 = register window forced branch-free / branchy,
// 6 = zmm block sort with exact 64-bit entries, 7 = zmm block sort with 32-bit
// quantised entries for k <= 255 (64-bit beyond, or for rows with +/-inf)
// (6 and 7: float32 on AVX-512; elsewhere they run 3).
// 1..7 exist for tests and A/B timings; 2 is also the fallback of 1, 4 and 5
// beyond 32 vectors.
template <class T>
static bool use_block(std::ptrdiff_t k, std::ptrdiff_t n) {
    // The register window costs O(k / lanes) per step, the block sort O(log k),
    // so the crossover depends on the vector width the window actually gets.
    // Measured on the AVX-512 VM (benchmarks/results/signal.md), the lower levels
    // forced with ECGCORE_SIMD: AVX-512 k = 300 (float32) / 400 (float64); AVX2
    // about 110 / 180 (at k = 201 the window took 55 / 70 ns per sample, the
    // block sort 32 / 68); portable code (other CPUs, ARM included) the block
    // sort wins from k = 7 up (29 vs 54 ns; at k = 201 float32 34 vs 620 ns).
    if (n <= 1) return false;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    const int lvl = block_level();
#else
    const int lvl = 0;
#endif
    if (lvl == 2) return k >= (sizeof(T) == 4 ? MB_MIN_K_F32 : MB_MIN_K_F64);
    if (lvl == 1) return k >= (sizeof(T) == 4 ? 129 : 201);
    return k >= 7;
}

// Sorted-block kernel (medsort_body.hpp; float32 on AVX-512 only). Its cost per
// sample hardly depends on k (one 256- or 512-entry block sort and merge per 256
// or 512 outputs, plus a constant walk), while the register window's grows with
// k: measured crossover on the AVX-512 VM near k = 130 (benchmarks/results/
// signal.md). Rows shorter than a block would pay for a whole block pair.
static bool use_sorted(std::ptrdiff_t k, std::ptrdiff_t n) { return k >= MS_MIN_K_F32 && k <= 511 && n >= 256; }

// The zmm kernel also compares 16-bit lanes (AVX-512BW), which the simd_level()
// check of blockkern.hpp does not cover.
static bool zmm_sorted_ok() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    static const bool ok = block_level() == 2 && __builtin_cpu_supports("avx512bw");
    return ok;
#else
    return false;
#endif
}

// Branch-free lower_bound: the comparisons compile to conditional moves, so the
// random outcome of each step costs no misprediction.
template <class T>
static inline std::ptrdiff_t lower_pos(const T* a, std::ptrdiff_t n, T v) {
    const T* base = a;
    while (n > 1) {
        const std::ptrdiff_t half = n / 2;
        base = (base[half] < v) ? base + half : base;
        n -= half;
    }
    return (base - a) + (*base < v);
}

// Whether a row holds a NaN. The plain loop (`has |= isnan(x[i])`) stayed
// scalar: perf put 10 % of a k = 201 float32 run in it (2 % now); these compare
// whole vectors (unordered compare: true only for NaN, not for +/-inf).
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("avx512f"))) static bool any_nan_512(const float* x, std::ptrdiff_t n) {
    __mmask16 bad = 0;
    std::ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        bad |= _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q);  // NaN in a or in b
    }
    for (; i < n; ++i) bad |= x[i] != x[i];
    return bad != 0;
}
__attribute__((target("avx512f"))) static bool any_nan_512(const double* x, std::ptrdiff_t n) {
    __mmask8 bad = 0;
    std::ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) bad |= _mm512_cmp_pd_mask(_mm512_loadu_pd(x + i), _mm512_loadu_pd(x + i + 8), _CMP_UNORD_Q);
    for (; i < n; ++i) bad |= x[i] != x[i];
    return bad != 0;
}
#endif
template <class T>
static bool any_nan(const T* x, std::ptrdiff_t n) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (ecgk::simd_level() == 2) return any_nan_512(x, n);  // ECGCORE_SIMD caps it too
#endif
    // chunks with a branch-free inner loop, which the compiler vectorises
    std::ptrdiff_t i = 0;
    for (; i + 64 <= n; i += 64) {
        int bad = 0;
        for (int j = 0; j < 64; ++j) bad |= x[i + j] != x[i + j];
        if (bad) return true;
    }
    for (; i < n; ++i)
        if (x[i] != x[i]) return true;
    return false;
}

template <class T>
static void median_row(const T* x, T* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract, T* win, int method,
                       bool exact) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if constexpr (sizeof(T) == 4) {
        if ((method == 6 || method == 7 || (method == 0 && use_sorted(k, n))) && zmm_sorted_ok() && k <= 511 && n > 1) {
            // looks for NaN itself (on the quantised path in its range scan:
            // one pass over the row fewer) and fills such a row with NaN
            ecgk::avx512::median_rows_sorted16_f32(x, y, n, k, subtract, method == 6 || exact, false);
            return;
        }
    }
#endif
    if (any_nan(x, n)) {
        // ordering is undefined with NaN; the whole row is reported as NaN
        for (std::ptrdiff_t j = 0; j < n; ++j) y[j] = std::numeric_limits<T>::quiet_NaN();
        return;
    }
    if (method == 3 || method == 6 || method == 7 || (method == 0 && use_block<T>(k, n))) {
        median_row_block(x, y, n, k, subtract);
        return;
    }
    if (method == 4 || method == 5) {
        bool done;
        if constexpr (sizeof(T) == 4)
            done = method == 4 ? ECGK_DISPATCH(median_rows_nb_f32, x, y, n, k, subtract)
                               : ECGK_DISPATCH(median_rows_br_f32, x, y, n, k, subtract);
        else
            done = method == 4 ? ECGK_DISPATCH(median_rows_nb_f64, x, y, n, k, subtract)
                               : ECGK_DISPATCH(median_rows_br_f64, x, y, n, k, subtract);
        if (done) return;
    }
    if (method != 2 && median_row_fast(x, y, n, k, subtract)) return;
    const std::ptrdiff_t h = k / 2;
    auto val = [&](std::ptrdiff_t p) -> T { return (p >= 0 && p < n) ? x[p] : (T)0; };
    for (std::ptrdiff_t j = 0; j < k; ++j) win[j] = val(j - h);
    std::sort(win, win + k);
    for (std::ptrdiff_t i = 0;; ++i) {
        const T med = win[h];
        y[i] = subtract ? (T)(x[i] - med) : med;
        if (i + 1 == n) break;
        const T out = val(i - h), in = val(i + h + 1);
        if (in == out) continue;
        const std::ptrdiff_t io = lower_pos(win, k, out), ii = lower_pos(win, k, in);
        // win[io] == out; move the elements strictly between the two slots by one
        if (in > out) {
            std::memmove(win + io, win + io + 1, (ii - io - 1) * sizeof(T));
            win[ii - 1] = in;
        } else {
            std::memmove(win + ii + 1, win + ii, (io - ii) * sizeof(T));
            win[ii] = in;
        }
    }
}

// out: None (a new array is returned) or a C-contiguous writable array of T and
// x's shape, which receives the result and is returned (no fresh allocation,
// whose page faults a new process pays on every call). It may be x itself: rows are then
// computed into a scratch row and copied, since most kernels read samples
// behind the one they write.
template <class T>
static py::array running_median(py::array_t<T, py::array::c_style> x, std::ptrdiff_t k, bool subtract, int method,
                                bool exact, py::object out) {
    if (method < 0 || method > 7) throw std::invalid_argument("method must be 0..7");
    if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D (rows, samples)");
    if (k < 1 || k % 2 == 0) throw std::invalid_argument("kernel size must be odd and positive");
    const std::ptrdiff_t R = x.shape(0), N = x.shape(1);
    py::array_t<T> y;
    if (out.is_none()) {
        y = py::array_t<T>({R, N});
    } else {
        if (!py::array_t<T, py::array::c_style>::check_(out))
            throw std::invalid_argument("out must be a C-contiguous array of the input's dtype");
        y = py::reinterpret_borrow<py::array_t<T>>(out);
        if (y.ndim() != 2 || y.shape(0) != R || y.shape(1) != N)
            throw std::invalid_argument("out must have the input's shape (rows, samples)");
        if (!y.writeable()) throw std::invalid_argument("out is read-only");
    }
    const T* xp = x.data();
    T* yp = y.mutable_data();
    if (N == 0) return std::move(y);
    bool overlap = (const void*)yp < (const void*)(xp + R * N) && (const void*)xp < (const void*)(yp + R * N);
    {
        py::gil_scoped_release nogil;
        std::vector<T> xcopy;
        if (overlap && xp != yp) {  // shifted views of one buffer: read from a copy
            xcopy.assign(xp, xp + R * N);
            xp = xcopy.data();
            overlap = false;
        }
        std::vector<T> win(k), row(overlap ? N : 0);
        for (std::ptrdiff_t r = 0; r < R; ++r) {
            if (overlap) {
                median_row(xp + r * N, row.data(), N, k, subtract, win.data(), method, exact);
                std::memcpy(yp + r * N, row.data(), N * sizeof(T));
            } else {
                median_row(xp + r * N, yp + r * N, N, k, subtract, win.data(), method, exact);
            }
        }
    }
    return std::move(y);
}

PYBIND11_MODULE(medfilt, m) {
    m.doc() = "Running-median kernels (see ecgcore.signal.median_baseline).";
    m.def("running_median", &running_median<double>, py::arg("x"), py::arg("k"), py::arg("subtract") = false,
          py::arg("method") = 0, py::arg("exact") = false, py::arg("out") = py::none());
    m.def("running_median", &running_median<float>, py::arg("x"), py::arg("k"), py::arg("subtract") = false,
          py::arg("method") = 0, py::arg("exact") = false, py::arg("out") = py::none());
}
