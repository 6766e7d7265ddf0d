// ecgcore._kernels.norm: per-row standardisation (z-score) with float64
// statistics. A "row" is one lead over time, or a whole record flattened
// (leads x time) for a record-wide z-score: the wrapper reshapes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "simd_level.hpp"

namespace py = pybind11;

// No fused multiply-add contraction: the AVX2/AVX-512 clones below must round
// as the baseline build does, so that results do not depend on the CPU (and
// zscore_segments stays bit-identical to zscore).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma clang fp contract(off)
#endif

#if defined(__GNUC__)
#define ECGK_INLINE inline __attribute__((always_inline))
#else
#define ECGK_INLINE inline
#endif

// Summation order, shared by every sum below so that zscore() and
// zscore_segments() stay bit-identical: ECGK_NL = 32 lanes, lane l takes
// samples l, l + 32, ...; the tail (n % 32 samples) goes to lane 0 in order;
// then the lanes are added in order 0 .. 31. Independent accumulators let the
// loop vectorise without -ffast-math, keep the rounding error ~N/32 times
// smaller than one running sum, and, as four vectors of eight doubles, hide
// the add latency that bounds a single accumulator chain (a record-wide
// z-score sums one 60,000-sample row: eight lanes took 4 cycles per 8 samples
// in the two statistics passes, 0.02 ms per 12 x 5000 record).
#define ECGK_NL 32

// Statistics in one pass: each lane sums d = x - c and d * d around a shift c,
// the row's first sample (0 when that is not finite), from which the mean and
// the sum of squared deviations follow. c is near the mean for a signal, so the
// subtraction s2 - s1 * s1 / n keeps nearly all 53 bits; when it would lose more
// than 20 (s1 * m1 > 2**20 ss, e.g. a first sample far out on a spike) or comes
// out negative or NaN, the squared deviations are summed again around the mean
// (row_ss, the two-pass sum): the result is then within about 2**-33 of the
// two-pass one, or equal to it. One pass instead of two over the row.
template <class T>
static ECGK_INLINE double shift_of(const T* p, std::ptrdiff_t n) {
    return (n > 0 && std::isfinite((double)p[0])) ? (double)p[0] : 0.0;
}

template <class T>
static ECGK_INLINE double row_ss(const T* p, std::ptrdiff_t n, double mean) {
    constexpr int L = ECGK_NL;
    double s[L] = {0};
    std::ptrdiff_t i = 0;
    for (; i + L <= n; i += L)
        for (int l = 0; l < L; ++l) { const double d = (double)p[i + l] - mean; s[l] += d * d; }
    for (; i < n; ++i) { const double d = (double)p[i] - mean; s[0] += d * d; }
    double t = 0;
    for (int l = 0; l < L; ++l) t += s[l];
    return t;
}

// mean and squared deviations of row p from its lanes' shifted sums
template <class T>
static ECGK_INLINE void finish_moments(const T* p, std::ptrdiff_t n, double c, const double* s1, const double* s2,
                                       double& mean, double& ss) {
    double t1 = 0, t2 = 0;
    for (int l = 0; l < ECGK_NL; ++l) { t1 += s1[l]; t2 += s2[l]; }
    const double m1 = t1 / (double)n;
    mean = c + m1;
    ss = t2 - t1 * m1;
    if (!(ss >= 0.0) || t1 * m1 > 0x1p20 * ss) ss = row_ss(p, n, mean);
}

template <class T>
static ECGK_INLINE void row_moments(const T* p, std::ptrdiff_t n, double& mean, double& ss, double& mn, double& mx) {
    constexpr int L = ECGK_NL;
    const double c = shift_of(p, n);
    double s1[L] = {0}, s2[L] = {0}, lo[L], hi[L];
    for (int l = 0; l < L; ++l) { lo[l] = std::numeric_limits<double>::infinity(); hi[l] = -lo[l]; }
    std::ptrdiff_t i = 0;
    for (; i + L <= n; i += L)
        for (int l = 0; l < L; ++l) {
            const double v = (double)p[i + l], d = v - c;
            s1[l] += d;
            s2[l] += d * d;
            lo[l] = v < lo[l] ? v : lo[l];
            hi[l] = v > hi[l] ? v : hi[l];
        }
    for (; i < n; ++i) {
        const double v = (double)p[i], d = v - c;
        s1[0] += d;
        s2[0] += d * d;
        lo[0] = v < lo[0] ? v : lo[0];
        hi[0] = v > hi[0] ? v : hi[0];
    }
    mn = lo[0]; mx = hi[0];
    for (int l = 0; l < L; ++l) { mn = lo[l] < mn ? lo[l] : mn; mx = hi[l] > mx ? hi[l] : mx; }
    finish_moments(p, n, c, s1, s2, mean, ss);
}

// constant: 0 -> zeros, 1 -> NaN, 2 -> keep the input unchanged
template <class T>
static py::tuple zscore(py::array_t<T, py::array::c_style> x, int ddof, double eps, int constant) {
    if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D (rows, samples)");
    const std::ptrdiff_t R = x.shape(0), N = x.shape(1);
    py::array_t<T> y({R, N});
    py::array_t<double> mean_a(R), std_a(R);
    py::array_t<bool> const_a(R);
    const T* xp = x.data();
    T* yp = y.mutable_data();
    double* mp = mean_a.mutable_data();
    double* sp = std_a.mutable_data();
    bool* cp = const_a.mutable_data();
    {
        py::gil_scoped_release nogil;
        for (std::ptrdiff_t r = 0; r < R; ++r) {
            const T* p = xp + r * N;
            T* q = yp + r * N;
            double mean, ss, mn, mx;
            row_moments(p, N, mean, ss, mn, mx);
            const double sd = std::sqrt(ss / (double)(N - ddof));
            // every sample equal (the true std is 0 even when rounding leaves a tiny one)
            const bool is_const = (mn == mx) || sd == 0.0;
            mp[r] = mean; sp[r] = is_const ? 0.0 : sd; cp[r] = is_const;
            if (is_const && !std::isnan(mean)) {
                if (constant == 0) for (std::ptrdiff_t i = 0; i < N; ++i) q[i] = (T)0;
                else if (constant == 1) for (std::ptrdiff_t i = 0; i < N; ++i) q[i] = std::numeric_limits<T>::quiet_NaN();
                else for (std::ptrdiff_t i = 0; i < N; ++i) q[i] = p[i];
                continue;
            }
            const double inv = 1.0 / (sd + eps);
            for (std::ptrdiff_t i = 0; i < N; ++i) q[i] = (T)(((double)p[i] - mean) * inv);
        }
    }
    return py::make_tuple(y, mean_a, std_a, const_a);
}

// ---------------------------------------------------------------------------
// Fused z-score + segmentation (the ecgfm-style presets): x (n, L, T) float32
// or float64, C-contiguous -> out (n, T / len, L, len) float32, the tail
// dropped. Each lead row (20 kB for 10 s at 500 Hz) is read once from memory
// for its statistics (it then sits in cache) and written straight into its
// windows, so the whole step costs about one memory copy instead of two.
//
// Semantics (those of the former numba kernel ecgcore.pipeline._fused):
// float64 statistics, population std (ddof 0); a lead (or record) is constant
// when all its samples compare equal to its first (exact, whatever the order
// of the sums; -0.0 == 0.0) or when std + eps == 0 (a float64 row whose
// samples are a subnormal apart: its std underflows), unless the mean is NaN.
// The statistics are those of zscore() above (row_moments: one shifted pass,
// 32 lanes; a record is one row), so for eps = 0 the output is bit-identical to
// zscore() then segmenting, cast to float32. The numba kernel summed in the
// order its vectoriser chose (host-dependent): the two differ by float64
// rounding only.

// row_moments() for K rows at once, each row's sums in the order of that
// function (ECGK_NL lanes as four vectors of eight: lane 8 q + l of vector q
// takes samples 8 q + l, 8 q + l + 32, ...; the tail goes to lane 0), so the
// results are bit-identical to its; the 8 K independent accumulator chains
// hide the add latency. GCC vector types, because the vectoriser leaves the
// scalar form scalar; each clone below maps them to its own registers, the
// order unchanged.
#if defined(__GNUC__)
template <int K, class T>
static ECGK_INLINE void rows_moments(const T* const* rows, std::ptrdiff_t n, double* mean, double* ss) {
    constexpr int L = 8, C = ECGK_NL / 8;
    typedef double v8d __attribute__((vector_size(L * sizeof(double))));
    typedef T v8t __attribute__((vector_size(L * sizeof(T))));
    v8d a1[K][C], a2[K][C], cv[K];
    double c[K];
    for (int k = 0; k < K; ++k) {
        c[k] = shift_of(rows[k], n);
        cv[k] = v8d{} + c[k];
        for (int q = 0; q < C; ++q) a1[k][q] = a2[k][q] = v8d{};
    }
    std::ptrdiff_t i = 0;
    for (; i + ECGK_NL <= n; i += ECGK_NL)
        for (int k = 0; k < K; ++k)
            for (int q = 0; q < C; ++q) {
                v8t v;
                std::memcpy(&v, rows[k] + i + q * L, sizeof v);
                const v8d d = __builtin_convertvector(v, v8d) - cv[k];
                a1[k][q] += d;
                a2[k][q] += d * d;
            }
    for (int k = 0; k < K; ++k) {
        double s1[ECGK_NL], s2[ECGK_NL];
        for (int q = 0; q < C; ++q)
            for (int l = 0; l < L; ++l) { s1[q * L + l] = a1[k][q][l]; s2[q * L + l] = a2[k][q][l]; }
        for (std::ptrdiff_t j = i; j < n; ++j) { const double d = (double)rows[k][j] - c[k]; s1[0] += d; s2[0] += d * d; }
        finish_moments(rows[k], n, c[k], s1, s2, mean[k], ss[k]);
    }
}
#else
template <int K, class T>
static ECGK_INLINE void rows_moments(const T* const* rows, std::ptrdiff_t n, double* mean, double* ss) {
    for (int k = 0; k < K; ++k) {
        double mn, mx;
        row_moments(rows[k], n, mean[k], ss[k], mn, mx);
    }
}
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#define ECGK_AVX512 1
// AVX-512 float32 form of rows_moments: the same lanes and order (one zmm =
// lanes 0-7), but each 8 samples convert with one instruction from memory;
// GCC's lowering of the generic vector conversion adds two shuffles.
#define ECGK_T512 __attribute__((target("avx512f"), noinline))  // called, not inlined: one call a row group
template <int K>
static ECGK_T512 void rows_moments_512(const float* const* rows, std::ptrdiff_t n, double* mean, double* ss) {
    constexpr int C = ECGK_NL / 8;
    __m512d a1[K][C], a2[K][C], cv[K];
    double c[K];
    for (int k = 0; k < K; ++k) {
        c[k] = shift_of(rows[k], n);
        cv[k] = _mm512_set1_pd(c[k]);
        for (int q = 0; q < C; ++q) a1[k][q] = a2[k][q] = _mm512_setzero_pd();
    }
    std::ptrdiff_t i = 0;
    for (; i + ECGK_NL <= n; i += ECGK_NL)
        for (int k = 0; k < K; ++k)
            for (int q = 0; q < C; ++q) {
                const __m512d d = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(rows[k] + i + 8 * q)), cv[k]);
                a1[k][q] = _mm512_add_pd(a1[k][q], d);
                a2[k][q] = _mm512_add_pd(a2[k][q], _mm512_mul_pd(d, d));  // no FMA: same rounding
            }
    for (int k = 0; k < K; ++k) {
        double s1[ECGK_NL], s2[ECGK_NL];
        for (int q = 0; q < C; ++q) {
            _mm512_storeu_pd(s1 + 8 * q, a1[k][q]);
            _mm512_storeu_pd(s2 + 8 * q, a2[k][q]);
        }
        for (std::ptrdiff_t j = i; j < n; ++j) { const double d = (double)rows[k][j] - c[k]; s1[0] += d; s2[0] += d * d; }
        finish_moments(rows[k], n, c[k], s1, s2, mean[k], ss[k]);
    }
}
#endif

// Whether every sample equals the first: exact (NaN never does, -0.0 equals
// 0.0; the verdict of min == max wherever the mean is not NaN).
template <class T>
static ECGK_INLINE bool row_same(const T* p, std::ptrdiff_t n) {
    const T first = p[0];
    unsigned diff = 0;
    for (std::ptrdiff_t i = 0; i < n; ++i) diff |= p[i] != first;
    return diff == 0;
}

// Whether a row's constant test needs row_same(), from its statistics alone.
// A constant float32 row of value c sums exactly in float64 whatever the
// order (n copies of a 24-bit mantissa, n < 2**29), so its mean is c within
// 2**-53 relative and its squared deviations sum to at most n * mean**2 *
// 2**-100: a row whose ss exceeds n * mean**2 * 2**-90 is not constant. The
// counting pass then runs only for the others, for infinite or NaN means and
// for float64 rows: the verdict stays exact and the hot pass compare-free.
template <class T>
static ECGK_INLINE bool need_same_pass(std::ptrdiff_t n, double mean, double ss) {
    if (!std::is_same_v<T, float> || n >= (std::ptrdiff_t(1) << 29) || !std::isfinite(mean)) return true;
    return ss <= mean * mean * ((double)n * 0x1p-90);
}

// The drivers below are compiled for AVX-512, AVX2 and the baseline (the default
// build stays portable) and picked at run time by ecgk::simd_level(), which
// ECGCORE_SIMD caps, as for the filter and median kernels. Sums keep their
// order and fp-contract is off, so every build gives the same bits.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ECGK_MULTI 1
#define ECGK_TAVX2 __attribute__((target("avx2"), noinline))
#define ECGK_TAVX512 __attribute__((target("avx512f"), noinline))
#endif

// Standardises row ``row`` (n samples, statistics given) into its windows.
template <class T>
static ECGK_INLINE void zseg_write(const T* row, float* out, std::ptrdiff_t L, std::ptrdiff_t len,
                                   std::ptrdiff_t k, double mean, double sd, bool same,
                                   int constant, double eps) {
    if ((same || sd + eps == 0.0) && !std::isnan(mean)) {
        for (std::ptrdiff_t j = 0; j < k; ++j) {
            float* o = out + j * L * len;
            const T* p = row + j * len;
            if (constant == 0) for (std::ptrdiff_t i = 0; i < len; ++i) o[i] = 0.0f;
            else if (constant == 1) for (std::ptrdiff_t i = 0; i < len; ++i) o[i] = std::numeric_limits<float>::quiet_NaN();
            else for (std::ptrdiff_t i = 0; i < len; ++i) o[i] = (float)p[i];
        }
        return;
    }
    const double inv = 1.0 / (sd + eps);
    for (std::ptrdiff_t j = 0; j < k; ++j) {
        float* o = out + j * L * len;
        const T* p = row + j * len;
        for (std::ptrdiff_t i = 0; i < len; ++i) o[i] = (float)(((double)p[i] - mean) * inv);
    }
}

// K leads of one record: statistics in lockstep (see rows_moments), then written.
template <bool A512, int K, class T>
static ECGK_INLINE void zseg_leads(const T* x, float* out, std::ptrdiff_t l0, std::ptrdiff_t L,
                                   std::ptrdiff_t T_, std::ptrdiff_t len, std::ptrdiff_t k,
                                   int constant, double eps) {
    const T* rows[K];
    double mean[K], ss[K];
    bool same[K];
    for (int q = 0; q < K; ++q) rows[q] = x + (l0 + q) * T_;
#ifdef ECGK_AVX512
    if constexpr (A512) rows_moments_512<K>(rows, T_, mean, ss); else
#endif
    rows_moments<K>(rows, T_, mean, ss);
    for (int q = 0; q < K; ++q)
        same[q] = need_same_pass<T>(T_, mean[q], ss[q]) && row_same(rows[q], T_);
    for (int q = 0; q < K; ++q)
        zseg_write(rows[q], out + (l0 + q) * len, L, len, k, mean[q],
                   std::sqrt(ss[q] / (double)T_), same[q], constant, eps);
}

template <bool A512, class T>
static ECGK_INLINE void zseg_record(
        const T* x, float* out, std::ptrdiff_t L, std::ptrdiff_t T_, std::ptrdiff_t len,
        std::ptrdiff_t k, bool scope_record, int constant, double eps) {
    if (scope_record) {
        // the record is contiguous: one row of L * T samples, summed as
        // ecgcore.signal.zscore sums it (bit-identical results for eps = 0)
        const std::ptrdiff_t n = L * T_;
        double mean, ss;
#ifdef ECGK_AVX512
        if constexpr (A512) rows_moments_512<1>(&x, n, &mean, &ss); else
#endif
        rows_moments<1>(&x, n, &mean, &ss);
        const bool same = need_same_pass<T>(n, mean, ss) && row_same(x, n);
        const double sd = std::sqrt(ss / (double)n);
        for (std::ptrdiff_t l = 0; l < L; ++l)
            zseg_write(x + l * T_, out + l * len, L, len, k, mean, sd, same, constant, eps);
        return;
    }
    std::ptrdiff_t l = 0;
    // two leads at a time: 16 accumulators (two sums of four vectors each), which
    // fit the 32 vector registers with the loads; four leads would spill
    for (; l + 2 <= L; l += 2) zseg_leads<A512, 2>(x, out, l, L, T_, len, k, constant, eps);
    for (; l < L; ++l) zseg_leads<A512, 1>(x, out, l, L, T_, len, k, constant, eps);
}

template <bool A512, class T>
static ECGK_INLINE void zseg_all(const T* x, float* out, std::ptrdiff_t n, std::ptrdiff_t L,
                                 std::ptrdiff_t T_, std::ptrdiff_t len, std::ptrdiff_t k,
                                 bool scope_record, int constant, double eps) {
    for (std::ptrdiff_t r = 0; r < n; ++r)
        zseg_record<A512>(x + r * L * T_, out + r * k * L * len, L, T_, len, k, scope_record, constant, eps);
}

#define ECGK_ZSEG_ARGS const T* x, float* out, std::ptrdiff_t n, std::ptrdiff_t L, std::ptrdiff_t T_, \
                       std::ptrdiff_t len, std::ptrdiff_t k, bool scope_record, int constant, double eps
#define ECGK_ZSEG_PASS x, out, n, L, T_, len, k, scope_record, constant, eps
template <class T>
static void zseg_base(ECGK_ZSEG_ARGS) { zseg_all<false>(ECGK_ZSEG_PASS); }
#ifdef ECGK_MULTI
template <class T>
ECGK_TAVX2 static void zseg_avx2(ECGK_ZSEG_ARGS) { zseg_all<false>(ECGK_ZSEG_PASS); }
// float32 rows take the hand-written AVX-512 statistics (rows_moments_512)
template <class T>
ECGK_TAVX512 static void zseg_avx512(ECGK_ZSEG_ARGS) { zseg_all<std::is_same_v<T, float>>(ECGK_ZSEG_PASS); }
#endif

template <class T>
static void zseg_dispatch(ECGK_ZSEG_ARGS) {
#ifdef ECGK_MULTI
    const int lvl = ecgk::simd_level();
    if (lvl == 2) return zseg_avx512<T>(ECGK_ZSEG_PASS);
    if (lvl == 1) return zseg_avx2<T>(ECGK_ZSEG_PASS);
#endif
    zseg_base<T>(ECGK_ZSEG_PASS);
}
#undef ECGK_ZSEG_ARGS
#undef ECGK_ZSEG_PASS

// The wrapper (ecgcore.signal.normalize.zscore_segments) validates the arguments.
// overwrite: a float32 x whose windows are the whole record (len == T) and
// that is writeable is standardised in place and returned as a (n, 1, L, T)
// view of itself: each sample is read before it is written, at the same
// index, and the write then hits the cache lines the statistics just read
// instead of a fresh output (a third of the step's memory traffic).
template <class T>
static py::array_t<float> zscore_segments(py::array_t<T, py::array::c_style> x, std::ptrdiff_t len,
                                          bool scope_record, int constant, double eps, bool overwrite) {
    if (x.ndim() != 3) throw std::invalid_argument("x must be 3-D (records, leads, samples)");
    if (len < 1) throw std::invalid_argument("length must be positive");
    if (constant < 0 || constant > 2) throw std::invalid_argument("constant must be 0, 1 or 2");
    const std::ptrdiff_t n = x.shape(0), L = x.shape(1), T_ = x.shape(2), k = T_ / len;
    py::array_t<float> out;
    if (std::is_same_v<T, float> && overwrite && len == T_ && x.writeable())
        out = py::array_t<float>({n, k, L, len}, reinterpret_cast<const float*>(x.data()), x);
    else
        out = py::array_t<float>({n, k, L, len});
    if (n == 0 || k == 0 || L == 0) return out;
    const T* xp = x.data();
    float* op = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        zseg_dispatch<T>(xp, op, n, L, T_, len, k, scope_record, constant, eps);
    }
    return out;
}

// ---------------------------------------------------------------------------
// Peak-to-peak of each float32 row in one pass (min, max and a NaN test
// together): the pipeline's basic quality flags (NaN and flat leads) read every
// record once with it instead of numpy's two reductions. out[r] is NaN where row
// r holds a NaN, else max - min in float32 (numpy's x.max(-1) - x.min(-1) to
// the bit). GCC does not vectorise a float min/max reduction without
// -ffast-math (NaN and signed-zero rules), so the loop is written with vector
// extensions: 16 lanes, one AVX-512 register or two AVX2 / four SSE ones.
// Returns how many rows are NaN or below thr.
#if defined(__GNUC__)
typedef float ecgk_v16f __attribute__((vector_size(64)));
typedef int ecgk_v16i __attribute__((vector_size(64)));
#endif

static ECGK_INLINE std::ptrdiff_t ptp_all(const float* x, std::ptrdiff_t rows, std::ptrdiff_t n,
                                          float thr, float* out) {
    std::ptrdiff_t low = 0;
    for (std::ptrdiff_t r = 0; r < rows; ++r) {
        const float* p = x + r * n;
        float a = p[0], b = p[0];
        int anynan = 0;
        std::ptrdiff_t t = 0;
#if defined(__GNUC__)
        if (n >= 16) {
            ecgk_v16f v, mn, mx;
            ecgk_v16i m, nan = {0};
            std::memcpy(&mn, p, sizeof mn);
            mx = mn;
            for (; t + 16 <= n; t += 16) {
                std::memcpy(&v, p + t, sizeof v);
                // select, not a min/max builtin: a NaN lane keeps the old value
                // (the NaN is remembered apart), as the scalar tail does
                m = v < mn;
                mn = (ecgk_v16f)((m & (ecgk_v16i)v) | (~m & (ecgk_v16i)mn));
                m = v > mx;
                mx = (ecgk_v16f)((m & (ecgk_v16i)v) | (~m & (ecgk_v16i)mx));
                nan |= v != v;
            }
            for (int k = 0; k < 16; ++k) {
                a = mn[k] < a ? mn[k] : a;
                b = mx[k] > b ? mx[k] : b;
                anynan |= nan[k];
            }
        }
#endif
        for (; t < n; ++t) {
            const float v = p[t];
            a = v < a ? v : a;
            b = v > b ? v : b;
            anynan |= v != v;
        }
        const float d = anynan ? std::numeric_limits<float>::quiet_NaN() : b - a;
        out[r] = d;
        low += !(d >= thr);
    }
    return low;
}

static std::ptrdiff_t ptp_base(const float* x, std::ptrdiff_t rows, std::ptrdiff_t n, float thr, float* out) {
    return ptp_all(x, rows, n, thr, out);
}
#ifdef ECGK_MULTI
ECGK_TAVX2 static std::ptrdiff_t ptp_avx2(const float* x, std::ptrdiff_t rows, std::ptrdiff_t n, float thr,
                                          float* out) {
    return ptp_all(x, rows, n, thr, out);
}
ECGK_TAVX512 static std::ptrdiff_t ptp_avx512(const float* x, std::ptrdiff_t rows, std::ptrdiff_t n, float thr,
                                              float* out) {
    return ptp_all(x, rows, n, thr, out);
}
#endif

// x (rows, n) float32 C-contiguous, out (rows,) float32 C-contiguous and
// writeable: both without conversion (noconvert in the binding), so a copy can
// never take the results away from the caller's array.
static std::ptrdiff_t ptp_rows(py::array_t<float, py::array::c_style> x, float thr,
                               py::array_t<float, py::array::c_style> out) {
    if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D (rows, samples)");
    if (out.ndim() != 1 || out.shape(0) != x.shape(0))
        throw std::invalid_argument("out must have one value per row");
    if (!out.writeable()) throw std::invalid_argument("out must be writeable");
    const std::ptrdiff_t rows = x.shape(0), n = x.shape(1);
    if (rows == 0) return 0;
    if (n == 0) throw std::invalid_argument("rows must not be empty");
    const float* xp = x.data();
    float* op = out.mutable_data();
    std::ptrdiff_t low;
    {
        py::gil_scoped_release nogil;
#ifdef ECGK_MULTI
        const int lvl = ecgk::simd_level();
        low = lvl == 2 ? ptp_avx512(xp, rows, n, thr, op)
              : lvl == 1 ? ptp_avx2(xp, rows, n, thr, op) : ptp_base(xp, rows, n, thr, op);
#else
        low = ptp_base(xp, rows, n, thr, op);
#endif
    }
    return low;
}

PYBIND11_MODULE(norm, m) {
    m.doc() = "Row statistics kernels: z-score (see ecgcore.signal.zscore) and one-pass peak-to-peak.";
    m.def("zscore", &zscore<double>, py::arg("x"), py::arg("ddof"), py::arg("eps"), py::arg("constant"));
    m.def("zscore", &zscore<float>, py::arg("x"), py::arg("ddof"), py::arg("eps"), py::arg("constant"));
    // float32 first: pybind11 tries the overloads in order without converting
    m.def("zscore_segments", &zscore_segments<float>, py::arg("x"), py::arg("length"),
          py::arg("scope_record"), py::arg("constant"), py::arg("eps"), py::arg("overwrite") = false);
    m.def("zscore_segments", &zscore_segments<double>, py::arg("x"), py::arg("length"),
          py::arg("scope_record"), py::arg("constant"), py::arg("eps"), py::arg("overwrite") = false);
    m.def("simd_level", [] { return ecgk::simd_level(); },
          "The vector level the kernels run: 2 AVX-512, 1 AVX2, 0 portable (ECGCORE_SIMD caps it).");
    m.def("ptp_rows", &ptp_rows, py::arg("x").noconvert(), py::arg("thr"), py::arg("out").noconvert(),
          "Peak-to-peak of each row of a float32 (rows, n) array into out; NaN for a row with a NaN. "
          "Returns the number of rows that are NaN or below thr.");
}
