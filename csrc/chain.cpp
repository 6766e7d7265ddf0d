// ecgcore._kernels.chain: IIR filtering (sosfilt / sosfiltfilt / filtfilt
// semantics), polyphase and linear resampling, fused in one pass over blocks of
// rows. The Python wrappers in ecgcore.signal design the filters and plans and
// validate the data; this module trusts them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "blockkern.hpp"

namespace ecgk {
// Optional z-score of each output row (ecgcore.signal.zscore, scope="lead").
struct ZPost {
    bool on = false;
    int ddof = 0;
    double eps = 0.0;
    int constant = 0;  // 0 zeros, 1 NaN, 2 keep
};
// A plan as the chain driver runs it: stages possibly normalised to unit
// sections (see chain_body.hpp), the gain that normalisation dropped, and the
// optional z-score.
struct ChainX {
    ChainPlan plan;
    std::vector<char> unit;
    double gain = 1.0;
    std::ptrdiff_t poly_down = 0;  // > 0: single-phase polyphase plan, base[m] = base[0] + m * poly_down
    ZPost z;
};
namespace portable {
#include "chain_body.hpp"
}
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "chain_body.hpp"
}
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
namespace avx512 {
#include "chain_body.hpp"
}
#pragma GCC pop_options
#endif
}  // namespace ecgk

namespace py = pybind11;
using ecgk::ChainPlan;
using ecgk::Stage;
using ecgk::ChainX;

// Rewrite every stage whose sections all have numerators b0 * [1, c, 1] (b0 != 0)
// as [1, c, 1] sections, rescale zi to match and collect the dropped gain:
// prod(b0) per pass, two passes for a zero-phase stage. Only for float64 state
// (the float32 recursion keeps scipy's coefficients as they are).
static ChainX make_x(ChainPlan plan, bool normalise) {
    ChainX cx;
    cx.unit.assign(plan.stages.size(), 0);
    if (normalise) {
        double G = 1.0;
        std::vector<Stage> orig = plan.stages;
        for (std::size_t i = 0; i < plan.stages.size(); ++i) {
            Stage& s = plan.stages[i];
            if (s.K != 2 || s.nsec > 8 || s.nsec == 7) continue;
            bool ok = true;
            for (int k = 0; k < s.nsec; ++k) {
                const double b0 = s.b[k * 3], b2 = s.b[k * 3 + 2];
                ok = ok && b0 != 0.0 && b0 == b2 && std::isfinite(b0) && std::isfinite(s.b[k * 3 + 1]);
            }
            if (!ok) continue;
            double c = 1.0;
            for (int k = 0; k < s.nsec; ++k) {
                const double b0 = s.b[k * 3];
                c *= b0;
                s.b[k * 3 + 0] = 1.0;
                s.b[k * 3 + 1] /= b0;
                s.b[k * 3 + 2] = 1.0;
                s.zi[k * 2 + 0] /= c;
                s.zi[k * 2 + 1] /= c;
            }
            G *= s.zero_phase ? c * c : c;
            cx.unit[i] = 1;
        }
        const double ag = std::fabs(G);
        if (!(ag > 1e-150 && ag < 1e150)) {  // keep far from under/overflow: undo
            plan.stages = orig;
            cx.unit.assign(plan.stages.size(), 0);
            G = 1.0;
        }
        cx.gain = G;
    }
    if (plan.resample == 1 && plan.poly.ph_start.size() == 2 && plan.n_out >= 2) {
        const auto& pl = plan.poly;
        const std::ptrdiff_t d = (std::ptrdiff_t)(pl.base[1] - pl.base[0]);
        bool ok = d > 0;
        for (std::ptrdiff_t m = 0; ok && m < plan.n_out; ++m)
            ok = pl.phase[m] == 0 && pl.base[m] == pl.base[0] + m * d;
        if (ok) cx.poly_down = d;
    }
    cx.plan = std::move(plan);
    return cx;
}

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

// zscore: None, or (ddof, eps, constant) to z-score every output row in float64
// (ecgcore.signal.zscore with scope="lead"; constant 0 zeros, 1 NaN, 2 keep).
template <class T>
static py::array_t<T> run(py::array_t<T, py::array::c_style> x, py::list stages, py::object resample,
                          bool double_state, py::object zscore) {
    if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D (rows, samples)");
    const std::ptrdiff_t rows = x.shape(0), n = x.shape(1);
    const bool dstate = sizeof(T) == sizeof(double) || double_state;
    ChainX cx = make_x(parse_plan(stages, resample, n), dstate);
    if (!zscore.is_none()) {
        auto t = zscore.cast<py::tuple>();
        cx.z.on = true;
        cx.z.ddof = t[0].cast<int>();
        cx.z.eps = t[1].cast<double>();
        cx.z.constant = t[2].cast<int>();
        if (!dstate) throw std::invalid_argument("the fused z-score needs float64 state");
        if (cx.z.ddof < 0 || cx.z.ddof >= cx.plan.n_out || !(cx.z.eps >= 0) || cx.z.constant < 0 || cx.z.constant > 2)
            throw std::invalid_argument("malformed z-score parameters");
    }
    py::array_t<T> y({rows, cx.plan.n_out});
    const T* xp = x.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        if constexpr (sizeof(T) == sizeof(double)) {
            ECGK_DISPATCH(runx_f64, xp, yp, rows, n, cx);
        } else {
            if (double_state) ECGK_DISPATCH(runx_f32d, xp, yp, rows, n, cx);
            else ECGK_DISPATCH(runx_f32, xp, yp, rows, n, cx);
        }
    }
    return y;
}

PYBIND11_MODULE(chain, m) {
    m.doc() = "Block IIR filtering and resampling kernels (see ecgcore.signal).";
    m.def("run", &run<double>, py::arg("x"), py::arg("stages"), py::arg("resample"), py::arg("double_state") = true,
          py::arg("zscore") = py::none());
    m.def("run", &run<float>, py::arg("x"), py::arg("stages"), py::arg("resample"), py::arg("double_state") = false,
          py::arg("zscore") = py::none());
    m.def("simd_level", []() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        return ecgk::simd_level();
#else
        return 0;
#endif
    });
}
