// Block kernels, compiled twice (portable and AVX2+FMA) by blockkern.hpp.
// No include guard and no #include on purpose: the file is textually included
// inside two namespaces.
//
// Layout: a block of W independent rows (leads of one or several records) is
// transposed into a time-major buffer buf[t * W + lane]. Every recursive
// filter step then works on a whole vector of W lanes at once, so the loop
// over rows is the vectorised one while time stays sequential, which is what
// an IIR recursion needs.

template <class C, int VW>
struct Vec {
    typedef C type __attribute__((vector_size(sizeof(C) * VW)));
};

// W = VW * NV lanes held as NV native vectors: several independent recursions
// in flight hide the latency of the per-sample dependency chain.
template <class C, int W>
struct Pack {
    static constexpr int LOW = W & -W;  // largest power of two dividing W
    static constexpr int VW = (int)(ECGK_VBYTES / sizeof(C)) < LOW ? (int)(ECGK_VBYTES / sizeof(C)) : LOW;
    static constexpr int NV = W / VW;
    typedef typename Vec<C, VW>::type V;
    V v[NV];
};

#define ECGK_AI static inline __attribute__((always_inline))
template <class C, int W>
ECGK_AI Pack<C, W> operator+(const Pack<C, W>& a, const Pack<C, W>& b) {
    Pack<C, W> r;
    for (int i = 0; i < Pack<C, W>::NV; ++i) r.v[i] = a.v[i] + b.v[i];
    return r;
}
template <class C, int W>
ECGK_AI Pack<C, W> operator-(const Pack<C, W>& a, const Pack<C, W>& b) {
    Pack<C, W> r;
    for (int i = 0; i < Pack<C, W>::NV; ++i) r.v[i] = a.v[i] - b.v[i];
    return r;
}
template <class C, int W>
ECGK_AI Pack<C, W> operator*(const Pack<C, W>& a, const Pack<C, W>& b) {
    Pack<C, W> r;
    for (int i = 0; i < Pack<C, W>::NV; ++i) r.v[i] = a.v[i] * b.v[i];
    return r;
}
template <class C, int W>
ECGK_AI Pack<C, W>& operator+=(Pack<C, W>& a, const Pack<C, W>& b) {
    for (int i = 0; i < Pack<C, W>::NV; ++i) a.v[i] += b.v[i];
    return a;
}

template <class C, int W>
ECGK_AI Pack<C, W> vld(const C* p) {
    // one native load per vector: a single wide copy of the struct goes through
    // the stack and stalls on store forwarding
    Pack<C, W> r;
    for (int i = 0; i < Pack<C, W>::NV; ++i) std::memcpy(&r.v[i], p + i * Pack<C, W>::VW, sizeof(r.v[i]));
    return r;
}

template <class C, int W>
ECGK_AI void vst(C* p, const Pack<C, W>& v) {
    for (int i = 0; i < Pack<C, W>::NV; ++i) std::memcpy(p + i * Pack<C, W>::VW, &v.v[i], sizeof(v.v[i]));
}

template <class C, int W>
ECGK_AI Pack<C, W> vset(C c) {
    Pack<C, W> r;
    for (int i = 0; i < Pack<C, W>::NV; ++i) {
        typename Pack<C, W>::V z = {};
        r.v[i] = z + c;
    }
    return r;
}

// One pass of a cascade of second-order DF2T sections over cnt samples,
// starting at time index t0 and stepping by `step` (+1 forward, -1 backward).
// NS > 0 fixes the section count at compile time so the state lives in registers.
template <class C, int W, int NS>
static void pass_sos(C* buf, std::ptrdiff_t t0, std::ptrdiff_t cnt, std::ptrdiff_t step,
                     const ::ecgk::Stage& s, bool init) {
    typedef Pack<C, W> V;
    constexpr int MAXS = 32;
    const int ns = NS > 0 ? NS : s.nsec;
    V b0[NS > 0 ? NS : MAXS], b1[NS > 0 ? NS : MAXS], b2[NS > 0 ? NS : MAXS];
    V a1[NS > 0 ? NS : MAXS], a2[NS > 0 ? NS : MAXS], z0[NS > 0 ? NS : MAXS], z1[NS > 0 ? NS : MAXS];
    C* p = buf + t0 * W;
    const V x0 = vld<C, W>(p);
    for (int k = 0; k < ns; ++k) {
        b0[k] = vset<C, W>((C)s.b[k * 3 + 0]);
        b1[k] = vset<C, W>((C)s.b[k * 3 + 1]);
        b2[k] = vset<C, W>((C)s.b[k * 3 + 2]);
        a1[k] = vset<C, W>((C)s.a[k * 3 + 1]);
        a2[k] = vset<C, W>((C)s.a[k * 3 + 2]);
        if (init) {
            z0[k] = vset<C, W>((C)s.zi[k * 2 + 0]) * x0;
            z1[k] = vset<C, W>((C)s.zi[k * 2 + 1]) * x0;
        } else {
            z0[k] = vset<C, W>(0);
            z1[k] = vset<C, W>(0);
        }
    }
    const std::ptrdiff_t stride = step * W;
    for (std::ptrdiff_t i = 0; i < cnt; ++i, p += stride) {
        V x = vld<C, W>(p);
        for (int k = 0; k < ns; ++k) {
            // scipy's sosfilt recursion, grouped so each update is one FMA off the
            // y dependency chain plus one on it
            V y = b0[k] * x + z0[k];
            V t = b1[k] * x + z1[k];
            z1[k] = b2[k] * x - a2[k] * y;
            z0[k] = t - a1[k] * y;
            x = y;
        }
        vst<C, W>(p, x);
    }
}

// General order-K cascade (used for (b, a) filters such as an 8th-order band-pass).
template <class C, int W>
static void pass_general(C* buf, std::ptrdiff_t t0, std::ptrdiff_t cnt, std::ptrdiff_t step,
                         const ::ecgk::Stage& s, bool init) {
    typedef Pack<C, W> V;
    constexpr int MAXST = 64;  // nsec * K, checked by the Python wrapper
    const int K = s.K, ns = s.nsec;
    V z[MAXST];
    C* p = buf + t0 * W;
    const V x0 = vld<C, W>(p);
    for (int j = 0; j < ns * K; ++j) z[j] = init ? vset<C, W>((C)s.zi[j]) * x0 : vset<C, W>(0);
    const std::ptrdiff_t stride = step * W;
    for (std::ptrdiff_t i = 0; i < cnt; ++i, p += stride) {
        V x = vld<C, W>(p);
        for (int k = 0; k < ns; ++k) {
            const double* b = &s.b[k * (K + 1)];
            const double* a = &s.a[k * (K + 1)];
            V* zk = z + k * K;
            V y = zk[0] + vset<C, W>((C)b[0]) * x;
            for (int j = 0; j + 1 < K; ++j)
                zk[j] = zk[j + 1] + x * vset<C, W>((C)b[j + 1]) - y * vset<C, W>((C)a[j + 1]);
            zk[K - 1] = x * vset<C, W>((C)b[K]) - y * vset<C, W>((C)a[K]);
            x = y;
        }
        vst<C, W>(p, x);
    }
}

template <class C, int W>
static void run_pass(C* buf, std::ptrdiff_t t0, std::ptrdiff_t cnt, std::ptrdiff_t step,
                     const ::ecgk::Stage& s, bool init) {
    if (s.K == 2) {
        switch (s.nsec) {
            case 1: pass_sos<C, W, 1>(buf, t0, cnt, step, s, init); return;
            case 2: pass_sos<C, W, 2>(buf, t0, cnt, step, s, init); return;
            case 3: pass_sos<C, W, 3>(buf, t0, cnt, step, s, init); return;
            case 4: pass_sos<C, W, 4>(buf, t0, cnt, step, s, init); return;
            case 5: pass_sos<C, W, 5>(buf, t0, cnt, step, s, init); return;
            case 6: pass_sos<C, W, 6>(buf, t0, cnt, step, s, init); return;
            case 8: pass_sos<C, W, 8>(buf, t0, cnt, step, s, init); return;
            default:
                if (s.nsec <= 32) { pass_sos<C, W, 0>(buf, t0, cnt, step, s, init); return; }
        }
    }
    pass_general<C, W>(buf, t0, cnt, step, s, init);
}

// Apply one stage to the n samples at buf[P .. P+n) (time indices). Zero-phase
// follows scipy's filtfilt/sosfiltfilt 'pad' method: odd extension of padlen
// samples, forward pass started from zi * first sample, backward pass started
// from zi * last forward output, then the extension is dropped (it stays in the
// buffer's margins, which are not read back).
template <class C, int W>
static void apply_stage(C* buf, std::ptrdiff_t P, std::ptrdiff_t n, const ::ecgk::Stage& s) {
    typedef Pack<C, W> V;
    if (!s.zero_phase) {
        run_pass<C, W>(buf, P, n, 1, s, false);
        return;
    }
    const std::ptrdiff_t p = s.padlen;
    if (p > 0) {
        const V first = vld<C, W>(buf + P * W), last = vld<C, W>(buf + (P + n - 1) * W);
        const V two = vset<C, W>(2);
        for (std::ptrdiff_t i = 1; i <= p; ++i) {
            vst<C, W>(buf + (P - i) * W, two * first - vld<C, W>(buf + (P + i) * W));
            vst<C, W>(buf + (P + n - 1 + i) * W, two * last - vld<C, W>(buf + (P + n - 1 - i) * W));
        }
    }
    run_pass<C, W>(buf, P - p, n + 2 * p, 1, s, true);
    run_pass<C, W>(buf, P + n + p - 1, n + 2 * p, -1, s, true);
}

template <class C, int W>
static void poly_block(const C* x, C* out, std::ptrdiff_t n_out, const ::ecgk::PolyPlan& pl) {
    typedef Pack<C, W> V;
    const C* coef;
    if constexpr (sizeof(C) == sizeof(float)) coef = pl.coef_f.data(); else coef = pl.coef.data();
    const int32_t* off = pl.off.data();
    const int32_t* phs = pl.ph_start.data();
    for (std::ptrdiff_t m = 0; m < n_out; ++m) {
        const int ph = pl.phase[m];
        const C* xb = x + pl.base[m] * W;
        V acc = vset<C, W>(0);
        for (int j = phs[ph]; j < phs[ph + 1]; ++j) acc += vset<C, W>(coef[j]) * vld<C, W>(xb - (std::ptrdiff_t)off[j] * W);
        vst<C, W>(out + m * W, acc);
    }
}

template <class C, int W>
static void linear_block(const C* x, C* out, std::ptrdiff_t n_out, const ::ecgk::LinPlan& pl) {
    typedef Pack<C, W> V;
    for (std::ptrdiff_t j = 0; j < n_out; ++j) {
        const C* p = x + pl.lo[j] * W;
        const V lo = vld<C, W>(p), hi = vld<C, W>(p + W);
        // the difference is taken in the input precision, as interp1d does on float32 data
        vst<C, W>(out + j * W, lo + vset<C, W>((C)pl.w[j]) * (hi - lo));
    }
}

// 4 x 4 register transposes between row-major data (rows of T) and the
// time-major buffer (lanes of C), with the T <-> C conversion done on the
// vectors: 8 shuffles per 16 samples instead of 16 scalar strided moves
// (the scalar transposes cost about as much as a whole filter stage).
template <class C>
struct Q4 {
    typedef C V __attribute__((vector_size(4 * sizeof(C))));
};
template <class C>
ECGK_AI void tr4(typename Q4<C>::V& a, typename Q4<C>::V& b, typename Q4<C>::V& c, typename Q4<C>::V& d) {
    typedef typename std::conditional<sizeof(C) == 4, int32_t, int64_t>::type I;
    typedef I M __attribute__((vector_size(4 * sizeof(C))));
    const M lo2 = {0, 4, 2, 6}, hi2 = {1, 5, 3, 7}, lo4 = {0, 1, 4, 5}, hi4 = {2, 3, 6, 7};
    const auto t0 = __builtin_shuffle(a, b, lo2), t1 = __builtin_shuffle(a, b, hi2);
    const auto t2 = __builtin_shuffle(c, d, lo2), t3 = __builtin_shuffle(c, d, hi2);
    a = __builtin_shuffle(t0, t2, lo4);
    b = __builtin_shuffle(t1, t3, lo4);
    c = __builtin_shuffle(t0, t2, hi4);
    d = __builtin_shuffle(t1, t3, hi4);
}

template <class T, class C>
ECGK_AI typename Q4<C>::V ld4(const T* p) {
    typename Q4<T>::V v;
    std::memcpy(&v, p, sizeof(v));
    return __builtin_convertvector(v, typename Q4<C>::V);
}
template <class T, class C>
ECGK_AI void st4(T* p, const typename Q4<C>::V& v) {
    const typename Q4<T>::V w = __builtin_convertvector(v, typename Q4<T>::V);
    std::memcpy(p, &w, sizeof(w));
}

// x: nr rows of n samples (row stride n) -> d[t * W + lane], lanes >= nr zero.
template <class T, class C, int W>
static void transpose_in(const T* x, std::ptrdiff_t nr, std::ptrdiff_t n, C* d) {
    static_assert(W % 4 == 0, "block widths are multiples of 4");
    typedef typename Q4<C>::V V;
    const std::ptrdiff_t n4 = n & ~(std::ptrdiff_t)3;
    for (int l0 = 0; l0 < W; l0 += 4) {
        if (l0 + 4 <= nr) {
            const T* r = x + l0 * n;
            for (std::ptrdiff_t t = 0; t < n4; t += 4) {
                V a = ld4<T, C>(r + t), b = ld4<T, C>(r + n + t), c = ld4<T, C>(r + 2 * n + t),
                  e = ld4<T, C>(r + 3 * n + t);
                tr4<C>(a, b, c, e);
                C* o = d + t * W + l0;
                std::memcpy(o, &a, sizeof(V));
                std::memcpy(o + W, &b, sizeof(V));
                std::memcpy(o + 2 * W, &c, sizeof(V));
                std::memcpy(o + 3 * W, &e, sizeof(V));
            }
            for (std::ptrdiff_t t = n4; t < n; ++t)
                for (int l = 0; l < 4; ++l) d[t * W + l0 + l] = (C)x[(l0 + l) * n + t];
        } else {
            // partly or wholly past the last row: scalar, zero-filled
            for (std::ptrdiff_t t = 0; t < n; ++t)
                for (int l = l0; l < l0 + 4; ++l) d[t * W + l] = l < nr ? (C)x[l * n + t] : (C)0;
        }
    }
}

// src[t * W + lane] -> nr rows of n_out samples (row stride n_out).
template <class T, class C, int W>
static void transpose_out(const C* src, std::ptrdiff_t nr, std::ptrdiff_t n_out, T* y) {
    typedef typename Q4<C>::V V;
    const std::ptrdiff_t n4 = n_out & ~(std::ptrdiff_t)3;
    for (int l0 = 0; l0 < W && l0 < nr; l0 += 4) {
        if (l0 + 4 <= nr) {
            T* r = y + l0 * n_out;
            for (std::ptrdiff_t t = 0; t < n4; t += 4) {
                const C* s = src + t * W + l0;
                V a, b, c, e;
                std::memcpy(&a, s, sizeof(V));
                std::memcpy(&b, s + W, sizeof(V));
                std::memcpy(&c, s + 2 * W, sizeof(V));
                std::memcpy(&e, s + 3 * W, sizeof(V));
                tr4<C>(a, b, c, e);
                st4<T, C>(r + t, a);
                st4<T, C>(r + n_out + t, b);
                st4<T, C>(r + 2 * n_out + t, c);
                st4<T, C>(r + 3 * n_out + t, e);
            }
            for (std::ptrdiff_t t = n4; t < n_out; ++t)
                for (int l = 0; l < 4; ++l) y[(l0 + l) * n_out + t] = (T)src[t * W + l0 + l];
        } else {
            for (int l = l0; l < nr; ++l)
                for (std::ptrdiff_t t = 0; t < n_out; ++t) y[l * n_out + t] = (T)src[t * W + l];
        }
    }
}

// Process rows [r0, r0+nr) (nr <= W; missing lanes are zero) of x (rows, n)
// into y (rows, n_out). buf / obuf are scratch of the sizes given by the driver.
template <class T, class C, int W>
static void block_rows(const T* x, T* y, std::ptrdiff_t nr, std::ptrdiff_t n, const ::ecgk::ChainPlan& plan,
                       std::ptrdiff_t P, std::ptrdiff_t buflen, C* buf, C* obuf) {
    const std::ptrdiff_t n_out = plan.n_out;
    transpose_in<T, C, W>(x, nr, n, buf + P * W);
    for (const auto& s : plan.stages) apply_stage<C, W>(buf, P, n, s);
    const C* src = buf + P * W;
    if (plan.resample) {
        // the resamplers read zeros around the signal (scipy's padtype='constant')
        std::memset(buf, 0, sizeof(C) * P * W);
        std::memset(buf + (P + n) * W, 0, sizeof(C) * (buflen - P - n) * W);
        if (plan.resample == 1) poly_block<C, W>(buf + P * W, obuf, n_out, plan.poly);
        else linear_block<C, W>(buf + P * W, obuf, n_out, plan.lin);
        src = obuf;
    }
    transpose_out<T, C, W>(src, nr, n_out, y);
}

template <class T, class C>
static void run_rows(const T* x, T* y, std::ptrdiff_t rows, std::ptrdiff_t n, const ::ecgk::ChainPlan& plan) {
    std::ptrdiff_t P = 0, R = 0;
    for (const auto& s : plan.stages) {
        if (s.zero_phase && s.padlen > P) P = s.padlen;
        if (s.zero_phase && s.padlen > R) R = s.padlen;
    }
    if (plan.resample == 1) {
        if (plan.poly.zl > P) P = plan.poly.zl;
        if (plan.poly.zr > R) R = plan.poly.zr;
    }
    if (plan.resample == 2 && R < 1) R = 1;
    const std::ptrdiff_t buflen = P + n + R;
    // scratch sized for the widest block actually used, left uninitialised:
    // every slot is written before it is read (transpose, odd extension,
    // resampler margins), and zero-filling 1 MB per call showed up in profiles
    const std::ptrdiff_t wmax = rows >= 24 ? 24 : rows > 8 ? 12 : rows > 4 ? 8 : 4;
    std::unique_ptr<C[]> buf_(new C[buflen * wmax]);
    std::unique_ptr<C[]> obuf_(new C[plan.resample ? plan.n_out * wmax : 1]);
    struct {
        C* p;
        C* data() const { return p; }
    } buf{buf_.get()}, obuf{obuf_.get()};
    // Blocks of 24 lanes, then one of 12 (a 12-lead record is exactly one block),
    // then a narrow tail, so few lanes are wasted whatever the row count.
    std::ptrdiff_t r = 0;
    for (; r + 24 <= rows; r += 24)
        block_rows<T, C, 24>(x + r * n, y + r * plan.n_out, 24, n, plan, P, buflen, buf.data(), obuf.data());
    auto tail = [&](auto wtag) {
        constexpr int WT = decltype(wtag)::value;
        const std::ptrdiff_t nr = rows - r < WT ? rows - r : WT;
        block_rows<T, C, WT>(x + r * n, y + r * plan.n_out, nr, n, plan, P, buflen, buf.data(), obuf.data());
        r += nr;
    };
    while (rows - r > 8) tail(std::integral_constant<int, 12>());
    if (rows - r > 4) tail(std::integral_constant<int, 8>());
    if (rows - r > 0) tail(std::integral_constant<int, 4>());
}

static void run_f64(const double* x, double* y, std::ptrdiff_t rows, std::ptrdiff_t n, const ::ecgk::ChainPlan& plan) {
    run_rows<double, double>(x, y, rows, n, plan);
}
static void run_f32(const float* x, float* y, std::ptrdiff_t rows, std::ptrdiff_t n, const ::ecgk::ChainPlan& plan) {
    run_rows<float, float>(x, y, rows, n, plan);
}
static void run_f32d(const float* x, float* y, std::ptrdiff_t rows, std::ptrdiff_t n, const ::ecgk::ChainPlan& plan) {
    run_rows<float, double>(x, y, rows, n, plan);
}
