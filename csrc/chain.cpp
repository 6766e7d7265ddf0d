// ecgcore._kernels.chain: IIR filtering (sosfilt / sosfiltfilt / filtfilt
// semantics), polyphase and linear resampling, fused in one pass over blocks of
// rows. The Python wrappers in ecgcore.signal design the filters and plans and
// validate the data; this module trusts them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>

#include "blockkern.hpp"

namespace py = pybind11;
using ecgk::ChainPlan;
using ecgk::Stage;

template <class T>
static std::vector<T> to_vec(py::handle h) {
    auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(h);
    if (!a) throw std::invalid_argument("plan array has the wrong type");
    return std::vector<T>(a.data(), a.data() + a.size());
}

// stages: list of (K, b (nsec, K+1), a (nsec, K+1), zi (nsec, K), padlen, zero_phase)
// resample: None | ("poly", n_out, base, phase, ph_start, off, coef, zl, zr) | ("linear", n_out, lo, w)
static ChainPlan parse_plan(py::list stages, py::object resample, std::ptrdiff_t n) {
    ChainPlan plan;
    for (auto item : stages) {
        auto t = item.cast<py::tuple>();
        Stage s;
        s.K = t[0].cast<int>();
        s.b = to_vec<double>(t[1]);
        s.a = to_vec<double>(t[2]);
        s.zi = to_vec<double>(t[3]);
        s.padlen = t[4].cast<std::ptrdiff_t>();
        s.zero_phase = t[5].cast<bool>();
        s.nsec = (int)(s.b.size() / (s.K + 1));
        if (s.K < 1 || s.nsec < 1 || s.a.size() != s.b.size() || (int)s.zi.size() != s.nsec * s.K ||
            s.nsec * s.K > 64)
            throw std::invalid_argument("malformed filter stage");
        if (s.zero_phase && s.padlen >= n) throw std::invalid_argument("signal not longer than padlen");
        plan.stages.push_back(std::move(s));
    }
    plan.n_out = n;
    if (!resample.is_none()) {
        auto t = resample.cast<py::tuple>();
        auto kind = t[0].cast<std::string>();
        plan.n_out = t[1].cast<std::ptrdiff_t>();
        if (kind == "poly") {
            plan.resample = 1;
            plan.poly.base = to_vec<int64_t>(t[2]);
            plan.poly.phase = to_vec<int32_t>(t[3]);
            plan.poly.ph_start = to_vec<int32_t>(t[4]);
            plan.poly.off = to_vec<int32_t>(t[5]);
            plan.poly.coef = to_vec<double>(t[6]);
            plan.poly.coef_f = to_vec<float>(t[7]);
            plan.poly.zl = t[8].cast<std::ptrdiff_t>();
            plan.poly.zr = t[9].cast<std::ptrdiff_t>();
            if ((std::ptrdiff_t)plan.poly.base.size() != plan.n_out || plan.poly.phase.size() != plan.poly.base.size())
                throw std::invalid_argument("malformed polyphase plan");
        } else if (kind == "linear") {
            plan.resample = 2;
            plan.lin.lo = to_vec<int64_t>(t[2]);
            plan.lin.w = to_vec<double>(t[3]);
            if ((std::ptrdiff_t)plan.lin.lo.size() != plan.n_out || plan.lin.w.size() != plan.lin.lo.size())
                throw std::invalid_argument("malformed linear plan");
            for (auto v : plan.lin.lo)
                if (v < 0 || v + 1 >= n) throw std::invalid_argument("linear plan reads outside the signal");
        } else {
            throw std::invalid_argument("unknown resampling kind");
        }
    }
    return plan;
}

template <class T>
static py::array_t<T> run(py::array_t<T, py::array::c_style> x, py::list stages, py::object resample,
                          bool double_state) {
    if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D (rows, samples)");
    const std::ptrdiff_t rows = x.shape(0), n = x.shape(1);
    ChainPlan plan = parse_plan(stages, resample, n);
    py::array_t<T> y({rows, plan.n_out});
    const T* xp = x.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        if constexpr (sizeof(T) == sizeof(double)) {
            ECGK_DISPATCH(run_f64, xp, yp, rows, n, plan);
        } else {
            if (double_state) ECGK_DISPATCH(run_f32d, xp, yp, rows, n, plan);
            else ECGK_DISPATCH(run_f32, xp, yp, rows, n, plan);
        }
    }
    return y;
}

PYBIND11_MODULE(chain, m) {
    m.doc() = "Block IIR filtering and resampling kernels (see ecgcore.signal).";
    m.def("run", &run<double>, py::arg("x"), py::arg("stages"), py::arg("resample"), py::arg("double_state") = true);
    m.def("run", &run<float>, py::arg("x"), py::arg("stages"), py::arg("resample"), py::arg("double_state") = false);
    m.def("simd_level", []() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        return ecgk::simd_level();
#else
        return 0;
#endif
    });
}
