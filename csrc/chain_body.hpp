// Chain driver, compiled once per instruction set by chain.cpp inside the same
// namespaces as blockkern_body.hpp (whose Pack, passes, resamplers and 4 x 4
// transposes it reuses). No include guard on purpose.
//
// On top of block_rows it does two things:
// * "unit" sections: a second-order section whose numerator is b0 * [1, c, 1]
//   (every Butterworth and iirnotch section) runs as [1, c, 1]: 4 FMA-class
//   operations per section and sample instead of 5 (b0 * x and b2 * x go).
//   The filter is linear, so the dropped gains (prod b0 per pass, squared for
//   zero-phase) are applied once, at the transpose out. zi is rescaled to the
//   normalised cascade (section k's state divided by b0_1 ... b0_k).
// * an optional per-lane z-score of the block's output, computed in float64 from
//   the time-major buffer while it is still in cache, applied in the same
//   transpose out (saves a separate pass over the float32 result and a call).

template <class C, int W, int NS>
static void pass_unit(C* buf, std::ptrdiff_t t0, std::ptrdiff_t cnt, std::ptrdiff_t step,
                      const ::ecgk::Stage& s, bool init) {
    typedef Pack<C, W> V;
    V c1[NS], a1[NS], a2[NS], z0[NS], z1[NS];
    C* p = buf + t0 * W;
    const V x0 = vld<C, W>(p);
    for (int k = 0; k < NS; ++k) {
        c1[k] = vset<C, W>((C)s.b[k * 3 + 1]);
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
        for (int k = 0; k < NS; ++k) {
            V y = x + z0[k];
            V t = c1[k] * x + z1[k];
            z1[k] = x - a2[k] * y;
            z0[k] = t - a1[k] * y;
            x = y;
        }
        vst<C, W>(p, x);
    }
}

template <class C, int W>
static void run_pass_x(C* buf, std::ptrdiff_t t0, std::ptrdiff_t cnt, std::ptrdiff_t step,
                       const ::ecgk::Stage& s, bool unit, bool init) {
    if (unit) {
        switch (s.nsec) {
            case 1: pass_unit<C, W, 1>(buf, t0, cnt, step, s, init); return;
            case 2: pass_unit<C, W, 2>(buf, t0, cnt, step, s, init); return;
            case 3: pass_unit<C, W, 3>(buf, t0, cnt, step, s, init); return;
            case 4: pass_unit<C, W, 4>(buf, t0, cnt, step, s, init); return;
            case 5: pass_unit<C, W, 5>(buf, t0, cnt, step, s, init); return;
            case 6: pass_unit<C, W, 6>(buf, t0, cnt, step, s, init); return;
            case 8: pass_unit<C, W, 8>(buf, t0, cnt, step, s, init); return;
            default: break;  // normalised plans only mark these counts as unit
        }
    }
    run_pass<C, W>(buf, t0, cnt, step, s, init);
}

// apply_stage with the unit-section passes (same padding and initial conditions)
template <class C, int W>
static void apply_stage_x(C* buf, std::ptrdiff_t P, std::ptrdiff_t n, const ::ecgk::Stage& s, bool unit) {
    typedef Pack<C, W> V;
    if (!s.zero_phase) {
        run_pass_x<C, W>(buf, P, n, 1, s, unit, false);
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
    run_pass_x<C, W>(buf, P - p, n + 2 * p, 1, s, unit, true);
    run_pass_x<C, W>(buf, P + n + p - 1, n + 2 * p, -1, s, unit, true);
}

// src[t * W + lane] -> nr rows of n_out samples, each lane mapped as
// (v - sub[lane]) * mul[lane] in C before the conversion to T.
template <class T, class C, int W>
static void transpose_out_affine(const C* src, std::ptrdiff_t nr, std::ptrdiff_t n_out, T* y,
                                 const C* sub, const C* mul) {
    typedef typename Q4<C>::V V;
    const std::ptrdiff_t n4 = n_out & ~(std::ptrdiff_t)3;
    for (int l0 = 0; l0 < W && l0 < nr; l0 += 4) {
        if (l0 + 4 <= nr) {
            V m, k;
            std::memcpy(&m, sub + l0, sizeof(V));
            std::memcpy(&k, mul + l0, sizeof(V));
            T* r = y + l0 * n_out;
            for (std::ptrdiff_t t = 0; t < n4; t += 4) {
                const C* s = src + t * W + l0;
                V a, b, c, e;
                std::memcpy(&a, s, sizeof(V));
                std::memcpy(&b, s + W, sizeof(V));
                std::memcpy(&c, s + 2 * W, sizeof(V));
                std::memcpy(&e, s + 3 * W, sizeof(V));
                a = (a - m) * k;
                b = (b - m) * k;
                c = (c - m) * k;
                e = (e - m) * k;
                tr4<C>(a, b, c, e);
                st4<T, C>(r + t, a);
                st4<T, C>(r + n_out + t, b);
                st4<T, C>(r + 2 * n_out + t, c);
                st4<T, C>(r + 3 * n_out + t, e);
            }
            for (std::ptrdiff_t t = n4; t < n_out; ++t)
                for (int l = 0; l < 4; ++l)
                    y[(l0 + l) * n_out + t] = (T)((src[t * W + l0 + l] - sub[l0 + l]) * mul[l0 + l]);
        } else {
            for (int l = l0; l < nr; ++l)
                for (std::ptrdiff_t t = 0; t < n_out; ++t)
                    y[l * n_out + t] = (T)((src[t * W + l] - sub[l]) * mul[l]);
        }
    }
}

// Polyphase resampling with one phase (up == 1: plain decimation by `down`,
// base[m] = base[0] + m * down): four outputs per sweep over the taps, so 4 x NV
// independent accumulators keep the FMA units busy; the generic loop runs one
// output at a time and waits on its accumulator's latency at every tap.
template <class C, int W>
static void poly_block_1ph(const C* x, C* out, std::ptrdiff_t n_out, const ::ecgk::PolyPlan& pl,
                           std::ptrdiff_t down) {
    typedef Pack<C, W> V;
    const C* coef;
    if constexpr (sizeof(C) == sizeof(float)) coef = pl.coef_f.data(); else coef = pl.coef.data();
    const int j0 = pl.ph_start[0], nt = pl.ph_start[1] - pl.ph_start[0];
    const int32_t* off = pl.off.data() + j0;
    coef += j0;
    const std::ptrdiff_t b0 = pl.base[0];
    std::ptrdiff_t m = 0;
    for (; m + 4 <= n_out; m += 4) {
        const C* xb = x + (b0 + m * down) * W;
        V a0 = vset<C, W>(0), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < nt; ++j) {
            const V c = vset<C, W>(coef[j]);
            const C* q = xb - (std::ptrdiff_t)off[j] * W;
            a0 += c * vld<C, W>(q);
            a1 += c * vld<C, W>(q + down * W);
            a2 += c * vld<C, W>(q + 2 * down * W);
            a3 += c * vld<C, W>(q + 3 * down * W);
        }
        vst<C, W>(out + m * W, a0);
        vst<C, W>(out + (m + 1) * W, a1);
        vst<C, W>(out + (m + 2) * W, a2);
        vst<C, W>(out + (m + 3) * W, a3);
    }
    for (; m < n_out; ++m) {
        const C* xb = x + (b0 + m * down) * W;
        V a0 = vset<C, W>(0);
        for (int j = 0; j < nt; ++j) a0 += vset<C, W>(coef[j]) * vld<C, W>(xb - (std::ptrdiff_t)off[j] * W);
        vst<C, W>(out + m * W, a0);
    }
}

template <class C, int W>
ECGK_AI Pack<C, W> vmin(const Pack<C, W>& a, const Pack<C, W>& b) {
    Pack<C, W> r;
    for (int i = 0; i < Pack<C, W>::NV; ++i) r.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i];
    return r;
}
template <class C, int W>
ECGK_AI Pack<C, W> vmax(const Pack<C, W>& a, const Pack<C, W>& b) {
    Pack<C, W> r;
    for (int i = 0; i < Pack<C, W>::NV; ++i) r.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
    return r;
}

template <class T, class C, int W>
static void block_rows_x(const T* x, T* y, std::ptrdiff_t r0, std::ptrdiff_t nr, std::ptrdiff_t n,
                         const ::ecgk::ChainX& cx, std::ptrdiff_t P, std::ptrdiff_t buflen, C* buf, C* obuf) {
    typedef Pack<C, W> V;
    const ::ecgk::ChainPlan& plan = cx.plan;
    const std::ptrdiff_t n_out = plan.n_out;
    transpose_in<T, C, W>(x, nr, n, buf + P * W);
    for (std::size_t i = 0; i < plan.stages.size(); ++i)
        apply_stage_x<C, W>(buf, P, n, plan.stages[i], cx.unit[i] != 0);
    const C* src = buf + P * W;
    if (plan.resample) {
        // the resamplers read zeros around the signal (scipy's padtype='constant')
        std::memset(buf, 0, sizeof(C) * P * W);
        std::memset(buf + (P + n) * W, 0, sizeof(C) * (buflen - P - n) * W);
        if (plan.resample == 1 && cx.poly_down > 0) poly_block_1ph<C, W>(buf + P * W, obuf, n_out, plan.poly, cx.poly_down);
        else if (plan.resample == 1) poly_block<C, W>(buf + P * W, obuf, n_out, plan.poly);
        else linear_block<C, W>(buf + P * W, obuf, n_out, plan.lin);
        src = obuf;
    }
    alignas(64) C sub[W], mul[W];
    for (int l = 0; l < W; ++l) { sub[l] = 0; mul[l] = (C)cx.gain; }
    y += r0 * n_out;  // y: the whole output; this block's rows start at r0
    if (!cx.z.on) {
        transpose_out_affine<T, C, W>(src, nr, n_out, y, sub, mul);
        return;
    }
    // z-score per lane: mean, then the sum of squared deviations (two passes, as
    // ecgcore.signal.zscore), float64 whatever T is; constant = all samples equal
    V s = vset<C, W>(0), lo = vld<C, W>(src), hi = lo;
    for (std::ptrdiff_t t = 0; t < n_out; ++t) {
        const V v = vld<C, W>(src + t * W);
        s += v;
        lo = vmin<C, W>(lo, v);
        hi = vmax<C, W>(hi, v);
    }
    alignas(64) C mean[W], mn[W], mx[W], ssa[W];
    vst<C, W>(mn, lo);
    vst<C, W>(mx, hi);
    vst<C, W>(mean, s);
    for (int l = 0; l < W; ++l) mean[l] = (C)((double)mean[l] / (double)n_out);
    const V mv = vld<C, W>(mean);
    V ss = vset<C, W>(0);
    for (std::ptrdiff_t t = 0; t < n_out; ++t) {
        const V d = vld<C, W>(src + t * W) - mv;
        ss += d * d;
    }
    vst<C, W>(ssa, ss);
    const double g = cx.gain, ag = g < 0 ? -g : g;
    bool fix[W];
    for (int l = 0; l < W; ++l) {
        // statistics of the unscaled lane; the true ones are gain * mean and |gain| * sd
        const double sd = std::sqrt((double)ssa[l] / (double)(n_out - cx.z.ddof)) * ag;
        const bool is_const = (mn[l] == mx[l]) || sd == 0.0;
        fix[l] = is_const && !std::isnan((double)mean[l]);
        sub[l] = mean[l];
        mul[l] = (C)(g / (sd + cx.z.eps));
    }
    transpose_out_affine<T, C, W>(src, nr, n_out, y, sub, mul);
    for (int l = 0; l < nr; ++l) {
        if (!fix[l]) continue;
        T* r = y + l * n_out;
        if (cx.z.constant == 0) for (std::ptrdiff_t t = 0; t < n_out; ++t) r[t] = (T)0;
        else if (cx.z.constant == 1) for (std::ptrdiff_t t = 0; t < n_out; ++t) r[t] = std::numeric_limits<T>::quiet_NaN();
        else for (std::ptrdiff_t t = 0; t < n_out; ++t) r[t] = (T)(src[t * W + l] * (C)g);
    }
}

template <class T, class C>
static void run_rows_x(const T* x, T* y, std::ptrdiff_t rows, std::ptrdiff_t n, const ::ecgk::ChainX& cx) {
    const ::ecgk::ChainPlan& plan = cx.plan;
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
    // resampler margins)
    const std::ptrdiff_t wmax = rows >= 24 ? 24 : rows > 8 ? 12 : rows > 4 ? 8 : 4;
    std::unique_ptr<C[]> buf_(new C[buflen * wmax]);
    std::unique_ptr<C[]> obuf_(new C[plan.resample ? plan.n_out * wmax : 1]);
    C* buf = buf_.get();
    C* obuf = obuf_.get();
    // Blocks of 24 lanes, then one of 12 (a 12-lead record is exactly one block),
    // then a narrow tail, so few lanes are wasted whatever the row count.
    std::ptrdiff_t r = 0;
    for (; r + 24 <= rows; r += 24)
        block_rows_x<T, C, 24>(x + r * n, y, r, 24, n, cx, P, buflen, buf, obuf);
    auto tail = [&](auto wtag) {
        constexpr int WT = decltype(wtag)::value;
        const std::ptrdiff_t nr = rows - r < WT ? rows - r : WT;
        block_rows_x<T, C, WT>(x + r * n, y, r, nr, n, cx, P, buflen, buf, obuf);
        r += nr;
    };
    while (rows - r > 8) tail(std::integral_constant<int, 12>());
    if (rows - r > 4) tail(std::integral_constant<int, 8>());
    if (rows - r > 0) tail(std::integral_constant<int, 4>());
}

static void runx_f64(const double* x, double* y, std::ptrdiff_t rows, std::ptrdiff_t n, const ::ecgk::ChainX& cx) {
    run_rows_x<double, double>(x, y, rows, n, cx);
}
static void runx_f32(const float* x, float* y, std::ptrdiff_t rows, std::ptrdiff_t n, const ::ecgk::ChainX& cx) {
    run_rows_x<float, float>(x, y, rows, n, cx);
}
static void runx_f32d(const float* x, float* y, std::ptrdiff_t rows, std::ptrdiff_t n, const ::ecgk::ChainX& cx) {
    run_rows_x<float, double>(x, y, rows, n, cx);
}
