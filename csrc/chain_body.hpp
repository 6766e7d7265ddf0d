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
// * a lone unit section (the notch) runs as a recursion on z0 alone whose
//   critical path is one FMA per sample (pass_unit1_fast).
// * float32 rows: 8 x 8 in-lane transposes on AVX-512 (transpose_in_8 /
//   transpose_out_8), with time outermost so the buffer streams once; on AVX2
//   for float32 buffers only.
// * float32 rows with float64 state on AVX-512 or AVX2 (the default for
//   float32 input) take the mixed-precision block (block_rows_h, planned by
//   make_mixed in chain.cpp): float32 buffer and 16/32-lane blocks (AVX2: 8); only the sections with
//   poles near z = 1 (the 0.5 Hz high-pass ones) run in float64, the 40 Hz
//   sections, the notch, the polyphase sum and the transposes in float32,
//   whose vectors hold twice the lanes. Each lane's first sample is subtracted
//   first so float32 rounding is relative to the signal, not its DC offset
//   (the plan's high-pass removes that constant exactly). Error stays below
//   ~2e-6 of the output range (tests/test_chain_f32.py); float64 rows never
//   take this path.
// * block buffers are 64-byte aligned and cached per thread (Scratch).
// * the 8 x 8 transposes walk time in chunks of 128 samples, each lane group
//   in turn, so each cache line of the block buffer is filled (or read) while
//   it is in L1 (block_rows_h, transpose_in_x, transpose_out_affine).
// * one record per call: on AVX2 a 12-lead record runs as an 8-lane and a
//   4-lane mixed block instead of two 8-lane ones (the 4-lane block's float64
//   sections take one ymm instead of two: 7-8 % less time per 12 x 5000 record);
//   the one-phase resampler sums eight outputs per sweep when a pack is a
//   single vector (a 16-lane float32 block on AVX-512). Every lane keeps its
//   operations and their order, so results do not change
//   (tests/test_chain_narrow_blocks.py compares a record with the same rows in
//   a batch). On AVX-512 the 16-lane block of a 12-lead record is not limited
//   by its 4 idle lanes: 8 + 4-lane blocks were slower (more vectors per
//   sample), and packing the idle float64 lanes with a second section skewed
//   by a sample (3 zmm instead of 4) saved under 2 %.

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

// One unit section ([1, c, 1] / [1, a1, a2]) on its own, rewritten so the
// recursion waits on one FMA per sample instead of an add and an FMA. With
// y[n] = x[n] + z0[n], DF2T gives
//   z0[n+1] = (c - a1) x[n] + (1 - a2) x[n-1] - a1 z0[n] - a2 z0[n-1],
// so z0[n+1] = fma(-a1, z0[n], fma(-a2, z0[n-1], v[n])) with v[n] off the chain.
// A lone section (the notch) is latency-bound in the DF2T form (8 cycles per
// sample on two vectors); here it is 4, for one extra operation. The first
// sample runs in DF2T form from the given (z0, z1), which fixes z0[-1], x[-1].
template <class C, int W>
static void pass_unit1_fast(C* buf, std::ptrdiff_t t0, std::ptrdiff_t cnt, std::ptrdiff_t step,
                            const ::ecgk::Stage& s, bool init) {
    typedef Pack<C, W> V;
    const C c = (C)s.b[1], a1 = (C)s.a[1], a2 = (C)s.a[2];
    const V na1 = vset<C, W>(-a1), na2 = vset<C, W>(-a2), ca = vset<C, W>(c - a1), ka = vset<C, W>((C)1 - a2);
    C* p = buf + t0 * W;
    const std::ptrdiff_t stride = step * W;
    V x = vld<C, W>(p);
    V z0 = init ? vset<C, W>((C)s.zi[0]) * x : vset<C, W>(0);
    const V z1 = init ? vset<C, W>((C)s.zi[1]) * x : vset<C, W>(0);
    if (cnt <= 0) return;
    // sample 0 in DF2T form
    V zp = z0;                                   // z0[n-1]
    V xp = x;                                    // x[n-1]
    vst<C, W>(p, x + z0);
    z0 = (vset<C, W>(c) * x + z1) - vset<C, W>(a1) * (x + z0);  // z0[1]
    p += stride;
    for (std::ptrdiff_t i = 1; i < cnt; ++i, p += stride) {
        x = vld<C, W>(p);
        vst<C, W>(p, x + z0);
        const V v = ca * x + ka * xp;            // off the recursion
        const V zn = na1 * z0 + (na2 * zp + v);
        zp = z0;
        z0 = zn;
        xp = x;
    }
}

template <class C, int W>
static void run_pass_x(C* buf, std::ptrdiff_t t0, std::ptrdiff_t cnt, std::ptrdiff_t step,
                       const ::ecgk::Stage& s, bool unit, bool init) {
    if (unit) {
        switch (s.nsec) {
            case 1: pass_unit1_fast<C, W>(buf, t0, cnt, step, s, init); return;
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

// Where sample t of output row r goes in the windowed layout (t < k * len).
template <class T>
ECGK_AI T* seg_at(const ::ecgk::SegOut& sg, T* y, std::ptrdiff_t r, std::ptrdiff_t t) {
    return y + (((r / sg.lc) * sg.k + t / sg.len) * sg.lc + r % sg.lc) * sg.len + t % sg.len;
}

#ifdef ECGC_MIXED
// whether the 8 x 8 transposes also convert to and from float64 buffers
#ifdef ECGC_AVX512
constexpr bool kT8Any = true;
#else
constexpr bool kT8Any = false;
#endif
// 8 x 8 transposes for float rows (the usual input), AVX-512 and AVX2 builds
// (AVX2: float32 buffers only, the mixed-precision block and float32 state): a 4 x 4
// transpose inside each 128-bit half of eight 8-float vectors whose halves hold
// rows i and i + 4, so 64 samples cost 16 in-lane shuffles and 8 conversions
// (the generic 4 x 4 double transposes need 8 lane-crossing shuffles and 4 split
// conversions per 16 samples, and those were a third of the chain's time).
ECGK_AI __m256 cat44(const float* lo, const float* hi) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(hi), 1);
}
// 4 x 4 transpose within each 128-bit half (its own inverse)
ECGK_AI void tr44(__m256& a, __m256& b, __m256& c, __m256& d) {
    const __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b);
    const __m256 t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
    a = _mm256_shuffle_ps(t0, t2, 0x44);
    b = _mm256_shuffle_ps(t0, t2, 0xEE);
    c = _mm256_shuffle_ps(t1, t3, 0x44);
    d = _mm256_shuffle_ps(t1, t3, 0xEE);
}
template <class C>
ECGK_AI void st8(C* o, __m256 v) {
    if constexpr (sizeof(C) == sizeof(double)) {
#ifdef ECGC_AVX512
        _mm512_storeu_pd(o, _mm512_cvtps_pd(v));
#else
        static_assert(sizeof(C) == sizeof(float), "AVX2 8 x 8 transposes: float32 buffers only");
#endif
    } else {
        _mm256_storeu_ps(o, v);
    }
}

// Rows l0 .. l0+7 of x (rows >= nr read as zeros), samples [0, n8) -> d lanes l0 .. l0+7,
// minus off[lane] (in float32) when off is given.
template <class C, int W>
static void transpose_in_8(const float* x, std::ptrdiff_t nr, std::ptrdiff_t n, std::ptrdiff_t n8, int l0, C* d,
                           const float* off = nullptr) {
    const __m256 c = off ? _mm256_loadu_ps(off + l0) : _mm256_setzero_ps();
    alignas(16) static const float zeros[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const float* r[8];
    std::ptrdiff_t inc[8];
    for (int i = 0; i < 8; ++i) {
        const bool ok = l0 + i < nr;
        r[i] = ok ? x + (l0 + i) * n : zeros;
        inc[i] = ok ? 8 : 0;
    }
    C* o = d + l0;
    for (std::ptrdiff_t t = 0; t < n8; t += 8, o += 8 * W) {
        __m256 a0 = cat44(r[0], r[4]), a1 = cat44(r[1], r[5]), a2 = cat44(r[2], r[6]), a3 = cat44(r[3], r[7]);
        __m256 b0 = cat44(r[0] + 4, r[4] + 4), b1 = cat44(r[1] + 4, r[5] + 4), b2 = cat44(r[2] + 4, r[6] + 4),
               b3 = cat44(r[3] + 4, r[7] + 4);
        for (int i = 0; i < 8; ++i) r[i] += inc[i];
        tr44(a0, a1, a2, a3);
        tr44(b0, b1, b2, b3);
        if (off) {
            a0 = _mm256_sub_ps(a0, c), a1 = _mm256_sub_ps(a1, c), a2 = _mm256_sub_ps(a2, c), a3 = _mm256_sub_ps(a3, c);
            b0 = _mm256_sub_ps(b0, c), b1 = _mm256_sub_ps(b1, c), b2 = _mm256_sub_ps(b2, c), b3 = _mm256_sub_ps(b3, c);
        }
        st8<C>(o, a0);
        st8<C>(o + W, a1);
        st8<C>(o + 2 * W, a2);
        st8<C>(o + 3 * W, a3);
        st8<C>(o + 4 * W, b0);
        st8<C>(o + 5 * W, b1);
        st8<C>(o + 6 * W, b2);
        st8<C>(o + 7 * W, b3);
    }
}

// d lanes l0 .. l0+7, samples [0, n8), mapped (v - sub) * mul -> rows l0 .. l0+7 of y (rows >= nr skipped).
// Samples [tb, n8) only (tb a multiple of 8): the caller walks the buffer in chunks.
template <class C, int W>
static void transpose_out_8(const C* src, std::ptrdiff_t nr, std::ptrdiff_t n_out, std::ptrdiff_t n8, int l0,
                            float* y, const C* sub, const C* mul, const ::ecgk::SegOut* sg = nullptr,
                            std::ptrdiff_t r0 = 0, std::ptrdiff_t tb = 0) {
    const int nv = nr - l0 < 8 ? (int)(nr - l0) : 8;
    // windows (sg): row r's sample t goes to base[r] + (t / L) * lc * L + t % L,
    // t < k * L; j, s track t / L and t % L per 8-sample chunk
    float* base[8] = {};
    std::ptrdiff_t L = 0, wstride = 0, kL = 0, j = 0, s = 0;
    if (sg) {
        L = sg->len;
        wstride = sg->lc * L;
        kL = sg->k * L;
        for (int i = 0; i < nv; ++i) {
            const std::ptrdiff_t r = r0 + l0 + i;
            base[i] = y + ((r / sg->lc) * sg->k * sg->lc + r % sg->lc) * L;
        }
        j = tb / L;
        s = tb % L;
    }
#ifdef ECGC_AVX512
    __m512d m64, k64;
#else
    static_assert(sizeof(C) == sizeof(float), "AVX2 8 x 8 transposes: float32 buffers only");
#endif
    __m256 m32, k32;
    if constexpr (sizeof(C) == sizeof(double)) {
#ifdef ECGC_AVX512
        m64 = _mm512_loadu_pd(sub + l0);
        k64 = _mm512_loadu_pd(mul + l0);
#endif
    } else {
        m32 = _mm256_loadu_ps(sub + l0);
        k32 = _mm256_loadu_ps(mul + l0);
    }
    for (std::ptrdiff_t t = tb; t < n8; t += 8) {
        __m256 o[8];
        for (int j = 0; j < 8; ++j) {
            const C* q = src + (t + j) * W + l0;
#ifdef ECGC_AVX512
            if constexpr (sizeof(C) == sizeof(double))
                o[j] = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(_mm512_loadu_pd(q), m64), k64));
            else
#endif
                o[j] = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(q), m32), k32);
        }
        tr44(o[0], o[1], o[2], o[3]);  // o[i]: row i (samples t..t+3) | row i+4 (same samples)
        tr44(o[4], o[5], o[6], o[7]);  // the same for samples t+4 .. t+7
        if (sg) {
            if (s + 8 <= L && t + 8 <= kL) {  // the chunk lies in window j
                for (int i = 0; i < 4; ++i) {
                    if (i < nv) {
                        float* r = base[i] + j * wstride + s;
                        _mm_storeu_ps(r, _mm256_castps256_ps128(o[i]));
                        _mm_storeu_ps(r + 4, _mm256_castps256_ps128(o[i + 4]));
                    }
                    if (i + 4 < nv) {
                        float* r = base[i + 4] + j * wstride + s;
                        _mm_storeu_ps(r, _mm256_extractf128_ps(o[i], 1));
                        _mm_storeu_ps(r + 4, _mm256_extractf128_ps(o[i + 4], 1));
                    }
                }
            } else {  // across a window boundary or past the last whole window
                alignas(32) float v[8][8];
                for (int i = 0; i < 4; ++i) {
                    _mm_store_ps(v[i], _mm256_castps256_ps128(o[i]));
                    _mm_store_ps(v[i] + 4, _mm256_castps256_ps128(o[i + 4]));
                    _mm_store_ps(v[i + 4], _mm256_extractf128_ps(o[i], 1));
                    _mm_store_ps(v[i + 4] + 4, _mm256_extractf128_ps(o[i + 4], 1));
                }
                for (int q = 0; q < 8; ++q) {
                    const std::ptrdiff_t tt = t + q;
                    if (tt >= kL) break;
                    for (int i = 0; i < nv; ++i) base[i][(tt / L) * wstride + tt % L] = v[i][q];
                }
            }
            s += 8;
            while (s >= L) s -= L, ++j;
            continue;
        }
        for (int i = 0; i < 4; ++i) {
            if (i < nv) {
                float* r = y + (l0 + i) * n_out + t;
                _mm_storeu_ps(r, _mm256_castps256_ps128(o[i]));
                _mm_storeu_ps(r + 4, _mm256_castps256_ps128(o[i + 4]));
            }
            if (i + 4 < nv) {
                float* r = y + (l0 + i + 4) * n_out + t;
                _mm_storeu_ps(r, _mm256_extractf128_ps(o[i], 1));
                _mm_storeu_ps(r + 4, _mm256_extractf128_ps(o[i + 4], 1));
            }
        }
    }
}

#ifdef ECGC_AVX512
// float32 <-> float64 packs of W lanes (W a multiple of 16): one zmm of 16
// floats is two zmm of 8 doubles.
template <int W>
ECGK_AI Pack<double, W> cvt_up(const Pack<float, W>& f) {
    static_assert(Pack<float, W>::VW == 16 && Pack<double, W>::VW == 8, "W must be a multiple of 16");
    Pack<double, W> r;
    for (int i = 0; i < Pack<float, W>::NV; ++i) {
        const __m512 m = (__m512)f.v[i];
        r.v[2 * i] = (typename Pack<double, W>::V)_mm512_cvtps_pd(_mm512_castps512_ps256(m));
        r.v[2 * i + 1] = (typename Pack<double, W>::V)_mm512_cvtps_pd(
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1)));
    }
    return r;
}
template <int W>
ECGK_AI Pack<float, W> cvt_down(const Pack<double, W>& d) {
    Pack<float, W> r;
    for (int i = 0; i < Pack<float, W>::NV; ++i) {
        const __m256 lo = _mm512_cvtpd_ps((__m512d)d.v[2 * i]), hi = _mm512_cvtpd_ps((__m512d)d.v[2 * i + 1]);
        r.v[i] = (typename Pack<float, W>::V)_mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
    }
    return r;
}
#else
// The same on AVX2. W a multiple of 8: one ymm of 8 floats is two ymm of 4
// doubles; W = 4 (the 4-lane tail block of a record of 9-12 leads, see
// run_rows_x): one xmm of floats is one ymm of doubles. Lane by lane the
// conversions are the same (exact up, round to nearest down).
template <int W>
ECGK_AI Pack<double, W> cvt_up(const Pack<float, W>& f) {
    Pack<double, W> r;
    if constexpr (Pack<float, W>::VW == Pack<double, W>::VW) {
        for (int i = 0; i < Pack<float, W>::NV; ++i)
            r.v[i] = __builtin_convertvector(f.v[i], typename Pack<double, W>::V);
    } else {
        static_assert(Pack<float, W>::VW == 8 && Pack<double, W>::VW == 4, "W must be 4 or a multiple of 8");
        for (int i = 0; i < Pack<float, W>::NV; ++i) {
            const __m256 m = (__m256)f.v[i];
            r.v[2 * i] = (typename Pack<double, W>::V)_mm256_cvtps_pd(_mm256_castps256_ps128(m));
            r.v[2 * i + 1] = (typename Pack<double, W>::V)_mm256_cvtps_pd(_mm256_extractf128_ps(m, 1));
        }
    }
    return r;
}
template <int W>
ECGK_AI Pack<float, W> cvt_down(const Pack<double, W>& d) {
    Pack<float, W> r;
    if constexpr (Pack<float, W>::VW == Pack<double, W>::VW) {
        for (int i = 0; i < Pack<float, W>::NV; ++i)
            r.v[i] = __builtin_convertvector(d.v[i], typename Pack<float, W>::V);
    } else {
        for (int i = 0; i < Pack<float, W>::NV; ++i) {
            const __m128 lo = _mm256_cvtpd_ps((__m256d)d.v[2 * i]), hi = _mm256_cvtpd_ps((__m256d)d.v[2 * i + 1]);
            r.v[i] = (typename Pack<float, W>::V)_mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
        }
    }
    return r;
}
#endif

// One unit section step ([1, c, 1] / [1, a1, a2], DF2T) on a pack.
template <class C, int W>
ECGK_AI Pack<C, W> unit_step(const Pack<C, W>& x, Pack<C, W>& z0, Pack<C, W>& z1, const Pack<C, W>& c,
                              const Pack<C, W>& a1, const Pack<C, W>& a2) {
    const Pack<C, W> y = x + z0;
    const Pack<C, W> t = c * x + z1;
    z1 = x - a2 * y;
    z0 = t - a1 * y;
    return y;
}

// A mixed-precision pass of a zero-phase unit stage over cnt samples from t0.
// Forward (FWD): float32 sections on b32, then float64 ones, result stored to
// b64. Backward: float64 sections on b64, then float32 ones, result to b32.
// States start at zi * the pass's first input sample (scipy's sosfiltfilt).
template <int W, int N32, int N64, bool FWD>
static void pass_mixed(float* b32, double* b64, std::ptrdiff_t t0, std::ptrdiff_t cnt, const ::ecgk::HStage& h) {
    typedef Pack<float, W> VF;
    typedef Pack<double, W> VD;
    VF cf[N32 > 0 ? N32 : 1], af1[N32 > 0 ? N32 : 1], af2[N32 > 0 ? N32 : 1], zf0[N32 > 0 ? N32 : 1],
        zf1[N32 > 0 ? N32 : 1];
    VD cd[N64], ad1[N64], ad2[N64], zd0[N64], zd1[N64];
    const std::ptrdiff_t step = FWD ? 1 : -1;
    float* p32 = b32 + t0 * W;
    double* p64 = b64 + t0 * W;
    const std::vector<double>& zi = FWD ? h.zf : h.zb;
    const int o32 = FWD ? 0 : N64, o64 = FWD ? N32 : 0;  // section index in pass order
    VD x0d;
    VF x0f;
    if (FWD) {
        x0f = vld<float, W>(p32);
        x0d = cvt_up<W>(x0f);
    } else {
        x0d = vld<double, W>(p64);
        x0f = cvt_down<W>(x0d);
    }
    for (int k = 0; k < N32; ++k) {
        cf[k] = vset<float, W>((float)h.s32[k * 3]);
        af1[k] = vset<float, W>((float)h.s32[k * 3 + 1]);
        af2[k] = vset<float, W>((float)h.s32[k * 3 + 2]);
        zf0[k] = vset<float, W>((float)zi[(o32 + k) * 2]) * x0f;
        zf1[k] = vset<float, W>((float)zi[(o32 + k) * 2 + 1]) * x0f;
    }
    for (int k = 0; k < N64; ++k) {
        cd[k] = vset<double, W>(h.s64[k * 3]);
        ad1[k] = vset<double, W>(h.s64[k * 3 + 1]);
        ad2[k] = vset<double, W>(h.s64[k * 3 + 2]);
        zd0[k] = vset<double, W>(zi[(o64 + k) * 2]) * x0d;
        zd1[k] = vset<double, W>(zi[(o64 + k) * 2 + 1]) * x0d;
    }
    const std::ptrdiff_t stride = step * W;
    for (std::ptrdiff_t i = 0; i < cnt; ++i, p32 += stride, p64 += stride) {
        if (FWD) {
            VF xf = vld<float, W>(p32);
            for (int k = 0; k < N32; ++k) xf = unit_step<float, W>(xf, zf0[k], zf1[k], cf[k], af1[k], af2[k]);
            VD xd = cvt_up<W>(xf);
            for (int k = 0; k < N64; ++k) xd = unit_step<double, W>(xd, zd0[k], zd1[k], cd[k], ad1[k], ad2[k]);
            vst<double, W>(p64, xd);
        } else {
            VD xd = vld<double, W>(p64);
            for (int k = 0; k < N64; ++k) xd = unit_step<double, W>(xd, zd0[k], zd1[k], cd[k], ad1[k], ad2[k]);
            VF xf = cvt_down<W>(xd);
            for (int k = 0; k < N32; ++k) xf = unit_step<float, W>(xf, zf0[k], zf1[k], cf[k], af1[k], af2[k]);
            vst<float, W>(p32, xf);
        }
    }
}

template <int W, bool FWD>
static void run_mixed(float* b32, double* b64, std::ptrdiff_t t0, std::ptrdiff_t cnt, const ::ecgk::HStage& h) {
    switch (h.n32() * 4 + h.n64()) {  // make_mixed admits n64 <= 2, and n32 <= 2 when n64 > 0
        case 1: pass_mixed<W, 0, 1, FWD>(b32, b64, t0, cnt, h); return;
        case 2: pass_mixed<W, 0, 2, FWD>(b32, b64, t0, cnt, h); return;
        case 5: pass_mixed<W, 1, 1, FWD>(b32, b64, t0, cnt, h); return;
        case 6: pass_mixed<W, 1, 2, FWD>(b32, b64, t0, cnt, h); return;
        case 9: pass_mixed<W, 2, 1, FWD>(b32, b64, t0, cnt, h); return;
        case 10: pass_mixed<W, 2, 2, FWD>(b32, b64, t0, cnt, h); return;
        default: break;
    }
}


#endif

// x: nr rows of n samples (row stride n) -> d[t * W + lane], lanes >= nr zero.
// Time outermost: every 4 x W tile of d is written whole, in order, so the
// buffer streams out once; lane-group outermost (blockkern_body.hpp's
// transpose_in) revisits each cache line W / 4 times from L2 and cost as much
// as a filter stage.
template <class T, class C, int W>
static void transpose_in_x(const T* x, std::ptrdiff_t nr, std::ptrdiff_t n, C* d) {
    static_assert(W % 4 == 0, "block widths are multiples of 4");
    typedef typename Q4<C>::V V;
#ifdef ECGC_MIXED
    if constexpr (std::is_same<T, float>::value && W % 8 == 0 && (kT8Any || std::is_same<C, float>::value)) {
        const std::ptrdiff_t n8 = n & ~(std::ptrdiff_t)7;
        for (std::ptrdiff_t t0 = 0; t0 < n8; t0 += 128) {  // chunks: see block_rows_h
            const std::ptrdiff_t len = n8 - t0 < 128 ? n8 - t0 : 128;
            for (int l0 = 0; l0 < W; l0 += 8) transpose_in_8<C, W>(x + t0, nr, n, len, l0, d + t0 * W);
        }
        for (std::ptrdiff_t t = n8; t < n; ++t)
            for (int l = 0; l < W; ++l) d[t * W + l] = l < nr ? (C)x[l * n + t] : (C)0;
        return;
    }
#endif
    const std::ptrdiff_t n4 = n & ~(std::ptrdiff_t)3;
    const int full = (int)(nr & ~(std::ptrdiff_t)3);  // lanes in whole groups of 4 rows
    for (std::ptrdiff_t t = 0; t < n4; t += 4) {
        C* o = d + t * W;
        for (int l0 = 0; l0 < full; l0 += 4) {
            const T* r = x + l0 * n + t;
            V a = ld4<T, C>(r), b = ld4<T, C>(r + n), c = ld4<T, C>(r + 2 * n), e = ld4<T, C>(r + 3 * n);
            tr4<C>(a, b, c, e);
            std::memcpy(o + l0, &a, sizeof(V));
            std::memcpy(o + W + l0, &b, sizeof(V));
            std::memcpy(o + 2 * W + l0, &c, sizeof(V));
            std::memcpy(o + 3 * W + l0, &e, sizeof(V));
        }
        for (int l = full; l < W; ++l)
            for (int k = 0; k < 4; ++k) o[k * W + l] = l < nr ? (C)x[l * n + t + k] : (C)0;
    }
    for (std::ptrdiff_t t = n4; t < n; ++t)
        for (int l = 0; l < W; ++l) d[t * W + l] = l < nr ? (C)x[l * n + t] : (C)0;
}

// src[t * W + lane] -> nr rows of n_out samples, each lane mapped as
// (v - sub[lane]) * mul[lane] in C before the conversion to T. Time outermost,
// as transpose_in_x, so src is read once in order.
template <class T, class C, int W>
static void transpose_out_affine(const C* src, std::ptrdiff_t nr, std::ptrdiff_t n_out, T* y,
                                 const C* sub, const C* mul, const ::ecgk::SegOut* sg = nullptr,
                                 std::ptrdiff_t r0 = 0) {
    typedef typename Q4<C>::V V;
#ifdef ECGC_MIXED
    if constexpr (std::is_same<T, float>::value && W % 8 == 0 && (kT8Any || std::is_same<C, float>::value)) {
        const std::ptrdiff_t n8 = n_out & ~(std::ptrdiff_t)7;
        // in chunks of 128 samples, each lane group in turn (see block_rows_h's transpose in)
        for (std::ptrdiff_t tb = 0; tb < n8; tb += 128) {
            const std::ptrdiff_t te = n8 - tb < 128 ? n8 : tb + 128;
            for (int l0 = 0; l0 < nr; l0 += 8) transpose_out_8<C, W>(src, nr, n_out, te, l0, y, sub, mul, sg, r0, tb);
        }
        for (std::ptrdiff_t t = n8; t < n_out; ++t)
            for (int l = 0; l < nr; ++l) {
                const T v = (T)((src[t * W + l] - sub[l]) * mul[l]);
                if (!sg) y[l * n_out + t] = v;
                else if (t < sg->k * sg->len) *seg_at(*sg, y, r0 + l, t) = v;
            }
        return;
    }
#endif
    const std::ptrdiff_t n4 = n_out & ~(std::ptrdiff_t)3;
    const int full = (int)(nr & ~(std::ptrdiff_t)3);
    V m[W / 4], k[W / 4];
    for (int g = 0; g < W / 4; ++g) {
        std::memcpy(&m[g], sub + 4 * g, sizeof(V));
        std::memcpy(&k[g], mul + 4 * g, sizeof(V));
    }
    for (std::ptrdiff_t t = 0; t < n4; t += 4) {
        const C* s = src + t * W;
        for (int l0 = 0; l0 < full; l0 += 4) {
            V a, b, c, e;
            std::memcpy(&a, s + l0, sizeof(V));
            std::memcpy(&b, s + W + l0, sizeof(V));
            std::memcpy(&c, s + 2 * W + l0, sizeof(V));
            std::memcpy(&e, s + 3 * W + l0, sizeof(V));
            const V mm = m[l0 / 4], kk = k[l0 / 4];
            a = (a - mm) * kk;
            b = (b - mm) * kk;
            c = (c - mm) * kk;
            e = (e - mm) * kk;
            tr4<C>(a, b, c, e);
            T* r = y + l0 * n_out + t;
            st4<T, C>(r, a);
            st4<T, C>(r + n_out, b);
            st4<T, C>(r + 2 * n_out, c);
            st4<T, C>(r + 3 * n_out, e);
        }
        for (int l = full; l < nr; ++l)
            for (int q = 0; q < 4; ++q) y[l * n_out + t + q] = (T)((s[q * W + l] - sub[l]) * mul[l]);
    }
    for (std::ptrdiff_t t = n4; t < n_out; ++t)
        for (int l = 0; l < nr; ++l) y[l * n_out + t] = (T)((src[t * W + l] - sub[l]) * mul[l]);
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
    if constexpr (Pack<C, W>::NV == 1) {
        // one vector per output (e.g. the 16-lane float32 block of one record of up
        // to 16 leads): eight outputs per sweep, 8 independent FMA chains (four
        // 4-cycle chains fill at most half of two FMA ports); each output's sum is
        // still over the taps in order, so the result is unchanged. Measured: the
        // resampler's share of a 12 x 5000 record, 0.3-1.7 us less (of 5-10 us)
        for (; m + 8 <= n_out; m += 8) {
            const C* xb = x + (b0 + m * down) * W;
            V a[8];
            for (int u = 0; u < 8; ++u) a[u] = vset<C, W>(0);
            for (int j = 0; j < nt; ++j) {
                const V c = vset<C, W>(coef[j]);
                const C* q = xb - (std::ptrdiff_t)off[j] * W;
                for (int u = 0; u < 8; ++u) a[u] += c * vld<C, W>(q + u * down * W);
            }
            for (int u = 0; u < 8; ++u) vst<C, W>(out + (m + u) * W, a[u]);
        }
    }
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

// Gain or z-score of the block's output src (S: the buffer's type) and the
// transpose out to rows r0 .. r0+nr of y. The z-score statistics are float64
// sums whatever S is (C = double); S = float only in the mixed path.
template <class S, class C, int W>
ECGK_AI Pack<C, W> vld_as(const S* p) {
    if constexpr (std::is_same<S, C>::value) return vld<C, W>(p);
#ifdef ECGC_MIXED
    else return cvt_up<W>(vld<S, W>(p));
#endif
}

template <class T, class C, class S, int W>
static void finish_block(const S* src, T* y, std::ptrdiff_t r0, std::ptrdiff_t nr, const ::ecgk::ChainX& cx) {
    typedef Pack<C, W> V;
    const std::ptrdiff_t n_out = cx.plan.n_out;
    alignas(64) S sub[W], mul[W];
    for (int l = 0; l < W; ++l) { sub[l] = 0; mul[l] = (S)cx.gain; }
    // y: the whole output. Rows go to yb (this block's rows, row stride n_out):
    // the output itself, or with windows, a cached scratch copied out by window
    const ::ecgk::SegOut& seg = ::ecgk::tl_seg;
#ifdef ECGC_MIXED
    // float32 output: the 8 x 8 transposes write the windows directly
    constexpr bool kDirect = std::is_same<T, float>::value && W % 8 == 0 && (kT8Any || std::is_same<S, float>::value);
#else
    constexpr bool kDirect = false;
#endif
    const std::ptrdiff_t L = seg.len;
    const bool direct = kDirect && L > 0;
    const ::ecgk::Scratch tmp(3, L > 0 && !direct ? sizeof(T) * nr * n_out : 1);
    T* yb = L > 0 ? (direct ? y : tmp.get<T>()) : y + r0 * n_out;
    auto out = [&]() {
        if (direct) transpose_out_affine<T, S, W>(src, nr, n_out, y, sub, mul, &seg, r0);
        else transpose_out_affine<T, S, W>(src, nr, n_out, yb, sub, mul);
    };
    // sample t of this block's row l, or nullptr for a sample past the last window
    auto at = [&](std::ptrdiff_t l, std::ptrdiff_t t) -> T* {
        if (!direct) return yb + l * n_out + t;
        return t < seg.k * L ? seg_at(seg, y, r0 + l, t) : nullptr;
    };
    auto windows = [&]() {
        const std::ptrdiff_t k = seg.k, lc = seg.lc;
        for (std::ptrdiff_t l = 0; l < nr; ++l) {
            const std::ptrdiff_t r = r0 + l, b = r / lc, li = r % lc;
            for (std::ptrdiff_t j = 0; j < k; ++j)
                std::memcpy(y + ((b * k + j) * lc + li) * L, yb + l * n_out + j * L, sizeof(T) * L);
        }
    };
    if (!cx.z.on) {
        out();
        if (L > 0 && !direct) windows();
        return;
    }
    // z-score per lane: mean, then the sum of squared deviations (two passes, as
    // ecgcore.signal.zscore), float64 whatever T is; constant = all samples equal
    V s = vset<C, W>(0), lo = vld_as<S, C, W>(src), hi = lo;
    for (std::ptrdiff_t t = 0; t < n_out; ++t) {
        const V v = vld_as<S, C, W>(src + t * W);
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
        const V d = vld_as<S, C, W>(src + t * W) - mv;
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
        sub[l] = (S)mean[l];
        mul[l] = (S)(g / (sd + cx.z.eps));
    }
    out();
    for (int l = 0; l < nr; ++l) {
        if (!fix[l]) continue;
        for (std::ptrdiff_t t = 0; t < n_out; ++t) {
            T* r = at(l, t);
            if (!r) break;
            if (cx.z.constant == 0) *r = (T)0;
            else if (cx.z.constant == 1) *r = std::numeric_limits<T>::quiet_NaN();
            else *r = (T)(src[t * W + l] * (S)g);
        }
    }
    if (L > 0 && !direct) windows();
}

template <class T, class C, int W>
static void block_rows_x(const T* x, T* y, std::ptrdiff_t r0, std::ptrdiff_t nr, std::ptrdiff_t n,
                         const ::ecgk::ChainX& cx, std::ptrdiff_t P, std::ptrdiff_t buflen, C* buf, C* obuf) {
    typedef Pack<C, W> V;
    const ::ecgk::ChainPlan& plan = cx.plan;
    const std::ptrdiff_t n_out = plan.n_out;
    transpose_in_x<T, C, W>(x, nr, n, buf + P * W);
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
    finish_block<T, C, C, W>(src, y, r0, nr, cx);
}

#ifdef ECGC_MIXED
// A float32-only stage in pass order (zi from HStage, identical in both passes).
template <int W>
static void pass_f32(float* b32, std::ptrdiff_t t0, std::ptrdiff_t cnt, std::ptrdiff_t step, const ::ecgk::HStage& h,
                     const ::ecgk::Stage& like) {
    ::ecgk::Stage s;
    s.K = 2;
    s.nsec = h.n32();
    s.zero_phase = true;
    s.padlen = like.padlen;
    for (int k = 0; k < s.nsec; ++k) {
        s.b.insert(s.b.end(), {1.0, h.s32[k * 3], 1.0});
        s.a.insert(s.a.end(), {1.0, h.s32[k * 3 + 1], h.s32[k * 3 + 2]});
    }
    s.zi = h.zf;
    run_pass_x<float, W>(b32, t0, cnt, step, s, true, true);
}

// The mixed-precision block (float32 rows, float64 state, AVX-512 or AVX2; see HStage in
// chain.cpp): the rows are transposed into a float32 buffer; a stage with float64
// sections runs its forward pass float32 -> float64 buffer and its backward pass
// back; float32-only stages (notch, low-pass), the resampler and the output run
// on float32 vectors twice as wide as float64 ones. Padding and initial states
// as apply_stage_x.
template <int W>
static void block_rows_h(const float* x, float* y, std::ptrdiff_t r0, std::ptrdiff_t nr, std::ptrdiff_t n,
                         const ::ecgk::ChainX& cx, std::ptrdiff_t P, std::ptrdiff_t buflen, float* b32, double* b64,
                         float* o32) {
    typedef Pack<float, W> VF;
    const ::ecgk::ChainPlan& plan = cx.plan;
    const std::ptrdiff_t n_out = plan.n_out;
    {
        // transpose in, minus each lane's first sample (one rounding of the
        // difference; the plan has a stage with DC gain 0, see make_mixed)
        alignas(64) float off[W];
        for (int l = 0; l < W; ++l) off[l] = l < nr ? x[l * n] : 0.0f;
        float* d = b32 + P * W;
        const std::ptrdiff_t n8 = n & ~(std::ptrdiff_t)7;
        if constexpr (W % 8 == 0) {
            // in chunks of 128 samples, each lane group in turn, so that a chunk of
            // the buffer is still in L1 when the next group fills its other lanes
            // (lane group outermost wrote each cache line of the buffer in two
            // halves, one whole pass apart). 4-6 % less time for a 12 x 5000
            // record's chain, 1-3 % for a batch; chunks of 64 or 256 did the same.
            for (std::ptrdiff_t t0 = 0; t0 < n8; t0 += 128) {
                const std::ptrdiff_t len = n8 - t0 < 128 ? n8 - t0 : 128;
                for (int l0 = 0; l0 < W; l0 += 8) transpose_in_8<float, W>(x + t0, nr, n, len, l0, d + t0 * W, off);
            }
        } else {  // W = 4 (AVX2 tail block): 4 x 4 transposes, the same subtraction
            static_assert(W == 4, "mixed blocks are 4 lanes wide or a multiple of 8");
            alignas(16) static const float zeros[4] = {0, 0, 0, 0};
            const float* r[4];
            std::ptrdiff_t inc[4];
            for (int l = 0; l < 4; ++l) {
                r[l] = l < nr ? x + l * n : zeros;
                inc[l] = l < nr ? 4 : 0;
            }
            const __m128 c = _mm_load_ps(off);
            for (std::ptrdiff_t t = 0; t < n8; t += 4) {
                __m128 a0 = _mm_loadu_ps(r[0]), a1 = _mm_loadu_ps(r[1]), a2 = _mm_loadu_ps(r[2]), a3 = _mm_loadu_ps(r[3]);
                for (int l = 0; l < 4; ++l) r[l] += inc[l];
                _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
                _mm_storeu_ps(d + t * 4, _mm_sub_ps(a0, c));
                _mm_storeu_ps(d + t * 4 + 4, _mm_sub_ps(a1, c));
                _mm_storeu_ps(d + t * 4 + 8, _mm_sub_ps(a2, c));
                _mm_storeu_ps(d + t * 4 + 12, _mm_sub_ps(a3, c));
            }
        }
        for (std::ptrdiff_t t = n8; t < n; ++t)
            for (int l = 0; l < W; ++l) d[t * W + l] = l < nr ? x[l * n + t] - off[l] : 0.0f;
    }
    for (std::size_t i = 0; i < plan.stages.size(); ++i) {
        const ::ecgk::Stage& s = plan.stages[i];
        const ::ecgk::HStage& h = cx.hs[i];
        const std::ptrdiff_t p = s.padlen;
        if (p > 0) {  // odd extension, in float32 like the data
            const VF first = vld<float, W>(b32 + P * W), last = vld<float, W>(b32 + (P + n - 1) * W);
            const VF two = vset<float, W>(2);
            for (std::ptrdiff_t k = 1; k <= p; ++k) {
                vst<float, W>(b32 + (P - k) * W, two * first - vld<float, W>(b32 + (P + k) * W));
                vst<float, W>(b32 + (P + n - 1 + k) * W, two * last - vld<float, W>(b32 + (P + n - 1 - k) * W));
            }
        }
        if (h.n64() == 0) {
            pass_f32<W>(b32, P - p, n + 2 * p, 1, h, s);
            pass_f32<W>(b32, P + n + p - 1, n + 2 * p, -1, h, s);
        } else {
            run_mixed<W, true>(b32, b64, P - p, n + 2 * p, h);
            run_mixed<W, false>(b32, b64, P + n + p - 1, n + 2 * p, h);
        }
    }
    const float* src = b32 + P * W;
    if (plan.resample) {
        std::memset(b32, 0, sizeof(float) * P * W);
        std::memset(b32 + (P + n) * W, 0, sizeof(float) * (buflen - P - n) * W);
        if (cx.poly_down > 0) poly_block_1ph<float, W>(b32 + P * W, o32, n_out, plan.poly, cx.poly_down);
        else poly_block<float, W>(b32 + P * W, o32, n_out, plan.poly);
        src = o32;
    }
    finish_block<float, double, float, W>(src, y, r0, nr, cx);
}
#endif

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
#ifdef ECGC_MIXED
    if constexpr (std::is_same<T, float>::value && std::is_same<C, double>::value) {
        if (cx.mixed) {
            // AVX-512: 32-lane blocks (float32 two zmm, float64 four), 16 for the
            // rest: a 12-lead record is one 16-lane block. AVX2: 8-lane blocks
            // (float32 one ymm, float64 two): the 16 ymm registers hold a
            // section's state and coefficients without spilling (16-lane blocks
            // were 1.4x slower per record, 32-lane ones 3x on a batch).
#ifdef ECGC_AVX512
            constexpr int WB = 32, WS = 16;
#else
            constexpr int WB = 8, WS = 8;
#endif
            const std::ptrdiff_t wm = rows > WS ? WB : WS;
            const ::ecgk::Scratch s32(0, sizeof(float) * buflen * wm), s64(1, sizeof(double) * buflen * wm),
                so(2, sizeof(float) * (plan.resample ? plan.n_out * wm : 1));
            float* b32 = s32.get<float>();
            double* b64 = s64.get<double>();
            float* o32 = so.get<float>();
            std::ptrdiff_t r = 0;
            for (; rows - r > WS; r += WB) {
                const std::ptrdiff_t nr = rows - r < WB ? rows - r : WB;
                block_rows_h<WB>(x + r * n, y, r, nr, n, cx, P, buflen, b32, b64, o32);
            }
#ifndef ECGC_AVX512
            // AVX2: 4 rows or fewer left (a 12-lead record's second block) run as
            // a 4-lane block, whose float64 sections take one ymm instead of two
            if (rows - r > 0 && rows - r <= 4) {
                block_rows_h<4>(x + r * n, y, r, rows - r, n, cx, P, buflen, b32, b64, o32);
                return;
            }
#endif
            if (r < rows) block_rows_h<WS>(x + r * n, y, r, rows - r, n, cx, P, buflen, b32, b64, o32);
            return;
        }
    }
#endif
#if defined(ECGC_MIXED) && !defined(ECGC_AVX512)
    if constexpr (std::is_same<C, double>::value) {
        // AVX2, float64 state: 8-lane blocks (two ymm per pack). Wider packs
        // outgrow the 16 ymm registers and spill inside the recursions and the
        // polyphase sum (24/16-lane blocks: 3.2x / 4.8x slower per record on
        // a batch / one 12-lead record; same results, lanes are independent).
        const ::ecgk::Scratch sb(1, sizeof(C) * buflen * 8), so(2, sizeof(C) * (plan.resample ? plan.n_out * 8 : 1));
        C* buf = sb.get<C>();
        C* obuf = so.get<C>();
        std::ptrdiff_t r = 0;
        for (; rows - r > 4; r += 8)
            block_rows_x<T, C, 8>(x + r * n, y, r, rows - r < 8 ? rows - r : 8, n, cx, P, buflen, buf, obuf);
        if (r < rows) block_rows_x<T, C, 4>(x + r * n, y, r, rows - r, n, cx, P, buflen, buf, obuf);
        return;
    }
#endif
    // scratch sized for the widest block actually used, left uninitialised:
    // every slot is written before it is read (transpose, odd extension,
    // resampler margins)
    const std::ptrdiff_t wmax = rows >= 24 ? 24 : rows > 8 ? 16 : rows > 4 ? 8 : 4;
    // 64-byte aligned: with W * sizeof(C) a multiple of 64 (W = 8, 16, 24 in
    // float64) every vector load and store of the passes and the resampler then
    // sits inside one cache line; split loads made the load-bound polyphase sum
    // about twice as slow
    const ::ecgk::Scratch sb(1, sizeof(C) * buflen * wmax), so(2, sizeof(C) * (plan.resample ? plan.n_out * wmax : 1));
    C* buf = sb.get<C>();
    C* obuf = so.get<C>();
    // Blocks of 24 lanes, then 16-lane ones (a 12-lead record is one: two zmm
    // per operation in float64 beat the three ymm of a 12-lane block, 4 lanes
    // idle or not), then a narrow tail.
    std::ptrdiff_t r = 0;
    for (; r + 24 <= rows; r += 24)
        block_rows_x<T, C, 24>(x + r * n, y, r, 24, n, cx, P, buflen, buf, obuf);
    auto tail = [&](auto wtag) {
        constexpr int WT = decltype(wtag)::value;
        const std::ptrdiff_t nr = rows - r < WT ? rows - r : WT;
        block_rows_x<T, C, WT>(x + r * n, y, r, nr, n, cx, P, buflen, buf, obuf);
        r += nr;
    };
    while (rows - r > 8) tail(std::integral_constant<int, 16>());
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
