// ecgcore._kernels.norm: per-row standardisation (z-score) with float64
// statistics. A "row" is one lead over time, or a whole record flattened
// (leads x time) for a record-wide z-score: the wrapper reshapes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>

namespace py = pybind11;

// Eight independent accumulators: the loop vectorises without -ffast-math
// and the rounding error stays ~N/8 times smaller than one running sum.
template <class T>
static void row_stats(const T* p, std::ptrdiff_t n, double& sum, double& mn, double& mx) {
    constexpr int L = 8;
    double s[L] = {0}, lo[L], hi[L];
    for (int l = 0; l < L; ++l) { lo[l] = std::numeric_limits<double>::infinity(); hi[l] = -lo[l]; }
    std::ptrdiff_t i = 0;
    for (; i + L <= n; i += L)
        for (int l = 0; l < L; ++l) {
            const double v = (double)p[i + l];
            s[l] += v;
            lo[l] = v < lo[l] ? v : lo[l];
            hi[l] = v > hi[l] ? v : hi[l];
        }
    for (; i < n; ++i) {
        const double v = (double)p[i];
        s[0] += v;
        lo[0] = v < lo[0] ? v : lo[0];
        hi[0] = v > hi[0] ? v : hi[0];
    }
    sum = 0; mn = lo[0]; mx = hi[0];
    for (int l = 0; l < L; ++l) { sum += s[l]; mn = lo[l] < mn ? lo[l] : mn; mx = hi[l] > mx ? hi[l] : mx; }
}

template <class T>
static double row_ss(const T* p, std::ptrdiff_t n, double mean) {
    constexpr int L = 8;
    double s[L] = {0};
    std::ptrdiff_t i = 0;
    for (; i + L <= n; i += L)
        for (int l = 0; l < L; ++l) { const double d = (double)p[i + l] - mean; s[l] += d * d; }
    for (; i < n; ++i) { const double d = (double)p[i] - mean; s[0] += d * d; }
    double t = 0;
    for (int l = 0; l < L; ++l) t += s[l];
    return t;
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
            double sum, mn, mx;
            row_stats(p, N, sum, mn, mx);
            const double mean = sum / (double)N;
            const double sd = std::sqrt(row_ss(p, N, mean) / (double)(N - ddof));
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

PYBIND11_MODULE(norm, m) {
    m.doc() = "Row-wise z-score kernels (see ecgcore.signal.zscore).";
    m.def("zscore", &zscore<double>, py::arg("x"), py::arg("ddof"), py::arg("eps"), py::arg("constant"));
    m.def("zscore", &zscore<float>, py::arg("x"), py::arg("ddof"), py::arg("eps"), py::arg("constant"));
}
