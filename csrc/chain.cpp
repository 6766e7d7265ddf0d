// ecgcore._kernels.chain: IIR filtering (sosfilt / sosfiltfilt / filtfilt
// semantics), polyphase and linear resampling, fused in one pass over blocks of
// rows. The Python wrappers in ecgcore.signal design the filters and plans and
// validate the data; this module trusts them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <new>
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif
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
// A zero-phase unit stage as the mixed-precision path runs it (float32 rows,
// AVX-512 or AVX2): the sections whose recursion float32 carries within ~1e-6 of the
// range (s32) and those that need float64 (s64: poles near z = 1). The forward
// pass runs s32 then s64, the backward pass s64 then s32, so each pass converts
// once; zf / zb are the step steady states (zi) of those two section orders.
struct HStage {
    std::vector<double> s32, s64;  // (c, a1, a2) per unit section
    std::vector<double> zf, zb;    // (z0, z1) per section, in pass order
    int n32() const { return (int)(s32.size() / 3); }
    int n64() const { return (int)(s64.size() / 3); }
};
struct ChainX {
    ChainPlan plan;
    std::vector<char> unit;
    double gain = 1.0;
    std::ptrdiff_t poly_down = 0;  // > 0: single-phase polyphase plan, base[m] = base[0] + m * poly_down
    ZPost z;
    bool mixed = false;  // float32 rows, float64 state: run the mixed-precision path
    std::vector<HStage> hs;
};
// The output layout of the call running on this thread: len > 0 writes
// non-overlapping windows of len samples, (rows / lc, k, lc, len), i.e.
// ecgcore.signal.segment's layout for rows that are groups of lc leads. Set by
// exec() around the kernel call (per call, so a Plan stays shared and const).
struct SegOut {
    std::ptrdiff_t len = 0, k = 0, lc = 0;
};
inline thread_local SegOut tl_seg;
// 64-byte aligned scratch for the block buffers. Up to 16 MB per slot stays
// cached per thread between calls: a 12-lead record needs about 1 MB, which
// glibc hands back to the kernel and faults in again on every call (a quarter
// of a one-record call's time went to page faults). Larger requests are
// allocated for the call only.
class Scratch {
  public:
    Scratch(int slot, std::size_t bytes) {
        bytes = (bytes + 63) & ~(std::size_t)63;
        if (bytes <= kCache) {
            Slot& s = slots()[slot];
            if (s.cap < bytes) {
                std::free(s.p);
                s.p = std::aligned_alloc(64, bytes);
                s.cap = s.p ? bytes : 0;
            }
            p_ = s.p;
        } else {
            p_ = own_ = std::aligned_alloc(64, bytes);
        }
        if (!p_) throw std::bad_alloc();
    }
    ~Scratch() { std::free(own_); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    template <class C>
    C* get() const { return static_cast<C*>(p_); }

  private:
    static constexpr std::size_t kCache = std::size_t(16) << 20;
    struct Slot {
        void* p = nullptr;
        std::size_t cap = 0;
        ~Slot() { std::free(p); }
    };
    static Slot* slots() {
        thread_local Slot s[4];
        return s;
    }
    void* p_ = nullptr;
    void* own_ = nullptr;
};

namespace portable {
#include "chain_body.hpp"
}
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#define ECGC_MIXED 1  // chain_body.hpp: the mixed-precision block, 8 x 8 float32 transposes
#include "chain_body.hpp"
#undef ECGC_MIXED
}
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
namespace avx512 {
#define ECGC_AVX512 1  // chain_body.hpp: AVX-512 intrinsics (8 x 8 transposes)
#define ECGC_MIXED 1
#include "chain_body.hpp"
#undef ECGC_MIXED
#undef ECGC_AVX512
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

// Smallest |A(e^jw)| of a section's denominator 1 + a1 z^-1 + a2 z^-2, taken at
// w = 0, pi and (complex poles) the pole angle, where it bottoms out. 1 / that is
// the gain from a rounding error in the state to the output: about 6 for the
// 40 Hz Butterworth sections, 80 for a 50 Hz Q30 notch, 25000 for the 0.5 Hz
// sections. float32 rounding (6e-8) times 1e3 stays far inside the 1e-4 contract.
static double min_den(double a1, double a2) {
    double m = std::min(std::fabs(1 + a1 + a2), std::fabs(1 - a1 + a2));
    if (a1 * a1 < 4 * a2 && a2 > 0) {
        const double r = std::sqrt(a2), c = -a1 / (2 * r);
        const double th = std::acos(std::max(-1.0, std::min(1.0, c)));
        const double re = 1 + a1 * std::cos(th) + a2 * std::cos(2 * th);
        const double im = -a1 * std::sin(th) - a2 * std::sin(2 * th);
        m = std::min(m, std::hypot(re, im));
    }
    return m;
}

// Step steady state of a cascade of unit sections (c, a1, a2), in that order:
// input u, y = g u with g = (2 + c) / (1 + a1 + a2), z0 = y - u, z1 = u - a2 y.
static bool unit_zi(const std::vector<double>& secs, std::vector<double>& zi) {
    double u = 1.0;
    for (std::size_t k = 0; k + 2 < secs.size(); k += 3) {
        const double c = secs[k], a1 = secs[k + 1], a2 = secs[k + 2], den = 1 + a1 + a2;
        if (den == 0.0) return false;
        const double y = (2 + c) / den * u;
        zi.push_back(y - u);
        zi.push_back(u - a2 * y);
        u = y;
    }
    return true;
}

// Float32 rows with float64 state on an AVX-512 or AVX2 machine (AVX2, 8-lane
// blocks: 1.25x faster than the float64 path on a batch, on par for one
// record): split every stage into
// float32 and float64 sections (see HStage). Only zero-phase unit stages of at
// most 4 sections with at most 2 float64 ones (a band-pass or high-pass of order
// up to 4, a notch, a low-pass), and no resampling or polyphase resampling; any
// other plan keeps the float64 path.
static void make_mixed(ChainX& cx) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (ecgk::simd_level() < 1 || cx.plan.resample == 2 || cx.plan.stages.empty()) return;
    std::vector<ecgk::HStage> hs;
    bool kills_dc = false;
    for (std::size_t i = 0; i < cx.plan.stages.size(); ++i) {
        const Stage& s = cx.plan.stages[i];
        if (!cx.unit[i] || !s.zero_phase || s.K != 2 || s.nsec > 4) return;
        ecgk::HStage h;
        for (int k = 0; k < s.nsec; ++k) {
            const double c = s.b[k * 3 + 1], a1 = s.a[k * 3 + 1], a2 = s.a[k * 3 + 2];
            auto& dst = min_den(a1, a2) >= 1e-3 ? h.s32 : h.s64;
            dst.insert(dst.end(), {c, a1, a2});
        }
        if (h.n64() > 2 || (h.n64() > 0 && h.n32() > 2)) return;
        std::vector<double> fwd = h.s32, bwd = h.s64;
        fwd.insert(fwd.end(), h.s64.begin(), h.s64.end());
        bwd.insert(bwd.end(), h.s32.begin(), h.s32.end());
        if (!unit_zi(fwd, h.zf) || !unit_zi(bwd, h.zb)) return;
        hs.push_back(std::move(h));
        for (int k = 0; k < s.nsec; ++k) kills_dc = kills_dc || s.b[k * 3 + 1] == -2.0;
    }
    // The float32 sections must not carry a large DC offset (their rounding is
    // relative to it, the tolerance to the output's range). The mixed block
    // subtracts each lane's first sample, which changes every stage's output by
    // a constant times its DC gain; a stage with a double zero at z = 1
    // (numerator [1, -2, 1]: any high-pass or band-pass) has DC gain 0 and
    // removes that constant exactly, so only such plans take the mixed path.
    if (!kills_dc) return;
    cx.hs = std::move(hs);
    cx.mixed = true;
#else
    (void)cx;
#endif
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
// A plan for rows of n samples of one dtype, parsed and checked once.
struct Prepared {
    ChainX cx;
    std::ptrdiff_t n = 0;
    bool f32 = false, double_state = true;
    std::ptrdiff_t seg_len = 0;
};

static Prepared prepare(bool f32, std::ptrdiff_t n, py::list stages, py::object resample, bool double_state,
                        py::object zscore, std::ptrdiff_t seg_len) {
    Prepared p;
    p.n = n;
    p.f32 = f32;
    p.double_state = !f32 || double_state;
    const bool dstate = p.double_state;
    p.cx = make_x(parse_plan(stages, resample, n), dstate);
    if (f32 && double_state) make_mixed(p.cx);
    if (!zscore.is_none()) {
        auto t = zscore.cast<py::tuple>();
        p.cx.z.on = true;
        p.cx.z.ddof = t[0].cast<int>();
        p.cx.z.eps = t[1].cast<double>();
        p.cx.z.constant = t[2].cast<int>();
        if (!dstate) throw std::invalid_argument("the fused z-score needs float64 state");
        if (p.cx.z.ddof < 0 || p.cx.z.ddof >= p.cx.plan.n_out || !(p.cx.z.eps >= 0) || p.cx.z.constant < 0 ||
            p.cx.z.constant > 2)
            throw std::invalid_argument("malformed z-score parameters");
    }
    if (seg_len < 0 || seg_len > p.cx.plan.n_out) throw std::invalid_argument("malformed segment parameters");
    p.seg_len = seg_len;
    return p;
}

// seg_lc > 0 (with a plan prepared with a segment length): (rows / seg_lc, windows, seg_lc, length)
// out: None, or a writeable C-contiguous (rows, n_out) array of x's dtype that
// receives the result (no windows): a caller that reuses one buffer for an
// intermediate result saves the page faults of a fresh output (about 6 % of
// the ecgfounder preset's time went to zeroing the new pages of this output).
// It must not overlap x.
template <class T>
static py::array_t<T> exec(py::array_t<T, py::array::c_style> x, const Prepared& p, std::ptrdiff_t seg_lc,
                           py::object out) {
    if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D (rows, samples)");
    if ((sizeof(T) == sizeof(float)) != p.f32) throw std::invalid_argument("x has another dtype than the plan");
    const std::ptrdiff_t rows = x.shape(0), n = x.shape(1);
    if (n != p.n) throw std::invalid_argument("x has another length than the plan");
    const ChainX& cx = p.cx;
    py::array_t<T> y;
    ecgk::SegOut seg;
    if (!out.is_none()) {
        if (p.seg_len != 0) throw std::invalid_argument("out is not supported with windows");
        if (!py::isinstance<py::array_t<T>>(out)) throw std::invalid_argument("out has another dtype than x");
        y = py::reinterpret_borrow<py::array_t<T>>(out);
        if (y.ndim() != 2 || y.shape(0) != rows || y.shape(1) != cx.plan.n_out || !y.writeable() ||
            !(y.flags() & py::array::c_style))
            throw std::invalid_argument("out must be a writeable C-contiguous (rows, n_out) array");
        const char* a = reinterpret_cast<const char*>(x.data());
        const char* b = reinterpret_cast<const char*>(y.data());
        if (rows > 0 && a < b + y.nbytes() && b < a + x.nbytes()) throw std::invalid_argument("out overlaps x");
    } else if (p.seg_len == 0) {
        y = py::array_t<T>({rows, cx.plan.n_out});
    } else {
        if (seg_lc < 1 || rows % seg_lc != 0) throw std::invalid_argument("malformed segment parameters");
        seg.len = p.seg_len;
        seg.lc = seg_lc;
        seg.k = cx.plan.n_out / seg.len;
        y = py::array_t<T>({rows / seg.lc, seg.k, seg.lc, seg.len});
    }
    const T* xp = x.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        struct Reset {
            ~Reset() { ecgk::tl_seg = ecgk::SegOut(); }
        } reset;
        ecgk::tl_seg = seg;
        if constexpr (sizeof(T) == sizeof(double)) {
            ECGK_DISPATCH(runx_f64, xp, yp, rows, n, cx);
        } else {
            if (p.double_state) ECGK_DISPATCH(runx_f32d, xp, yp, rows, n, cx);
            else ECGK_DISPATCH(runx_f32, xp, yp, rows, n, cx);
        }
    }
    return y;
}

template <class T>
static py::array_t<T> run(py::array_t<T, py::array::c_style> x, py::list stages, py::object resample,
                          bool double_state, py::object zscore, py::object segment, py::object out) {
    if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D (rows, samples)");
    std::ptrdiff_t seg_len = 0, seg_lc = 0;
    if (!segment.is_none()) {
        auto t = segment.cast<py::tuple>();
        seg_len = t[0].cast<std::ptrdiff_t>();
        seg_lc = t[1].cast<std::ptrdiff_t>();
        if (seg_len < 1) throw std::invalid_argument("malformed segment parameters");
    }
    const Prepared p = prepare(sizeof(T) == sizeof(float), x.shape(1), stages, resample, double_state, zscore, seg_len);
    return exec<T>(x, p, seg_lc, out);
}

PYBIND11_MODULE(chain, m) {
    m.doc() = "Block IIR filtering and resampling kernels (see ecgcore.signal).";
    // segment: None, or (length, leads) to return (rows / leads, n_out // length,
    // leads, length) windows instead of (rows, n_out)
    // out: None, or the (rows, n_out) array to write the result into (see exec)
    m.def("run", &run<double>, py::arg("x"), py::arg("stages"), py::arg("resample"), py::arg("double_state") = true,
          py::arg("zscore") = py::none(), py::arg("segment") = py::none(), py::arg("out") = py::none());
    m.def("run", &run<float>, py::arg("x"), py::arg("stages"), py::arg("resample"), py::arg("double_state") = false,
          py::arg("zscore") = py::none(), py::arg("segment") = py::none(), py::arg("out") = py::none());
    py::class_<Prepared>(m, "Plan", py::module_local(), "A chain plan parsed once for rows of one length and dtype (see prepare).");
    // prepare(float32, n, stages, resample, double_state, zscore, segment_length) -> Plan;
    // run_plan(x, plan, leads) runs it (leads: rows per group for the windows, 0 without)
    m.def("prepare", &prepare, py::arg("float32"), py::arg("n"), py::arg("stages"), py::arg("resample"),
          py::arg("double_state") = true, py::arg("zscore") = py::none(), py::arg("segment_length") = 0);
    // whether the plan runs the mixed-precision block (tests check that the
    // capped AVX2 kernels take it)
    m.def("plan_is_mixed", [](const Prepared& p) { return p.cx.mixed; }, py::arg("plan"));
    m.def("run_plan", &exec<double>, py::arg("x"), py::arg("plan"), py::arg("leads") = 0, py::arg("out") = py::none());
    m.def("run_plan", &exec<float>, py::arg("x"), py::arg("plan"), py::arg("leads") = 0, py::arg("out") = py::none());
    m.def("simd_level", []() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        return ecgk::simd_level();
#else
        return 0;
#endif
    });
}
