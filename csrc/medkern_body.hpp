// Running-median kernel with the sorted window held in vector registers;
// compiled once per instruction set by medfilt.cpp (textually included inside a
// namespace, hence no include guard and no #include).
//
// The window (k samples, padded with +inf up to NC * VW slots) stays sorted.
// One step removes `out` and inserts `in`. Instead of locating both with
// binary searches and shifting memory, every slot is recomputed from itself
// and one neighbour with comparisons against `in` and `out` only:
//
//   in >= out:  w'[i] = w[i] < out ? w[i] : max(w[i], min(w[i+1], in))
//   in <  out:  w'[i] = w[i-1] < out ? min(w[i], max(w[i-1], in)) : w[i]
//
// (w[-1] = -inf, w[NC*VW] = +inf). These are exactly "delete the first copy of
// out, insert in before the first element >= in" written per slot, so the
// window stays the sorted multiset and the median w[k/2] is an exact sample (or
// a padding zero), bit-equal to scipy.signal.medfilt. A step is ~5 vector
// instructions per VW slots with no memory traffic and no data-dependent
// addressing; the only branch is the sign of in - out.

template <class T, int NC>
static void median_row_reg(const T* x, T* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract) {
    constexpr int VW = ECGK_VBYTES / sizeof(T);
    typedef T V __attribute__((vector_size(ECGK_VBYTES)));
    typedef typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type I;
    typedef I VI __attribute__((vector_size(ECGK_VBYTES)));
    const T inf = std::numeric_limits<T>::infinity();
    const std::ptrdiff_t h = k / 2;
    auto val = [&](std::ptrdiff_t p) -> T { return (p >= 0 && p < n) ? x[p] : (T)0; };

    alignas(64) T init[NC * VW];
    for (std::ptrdiff_t j = 0; j < k; ++j) init[j] = val(j - h);
    std::sort(init, init + k);
    for (int j = (int)k; j < NC * VW; ++j) init[j] = inf;
    V w[NC];
    for (int c = 0; c < NC; ++c) std::memcpy(&w[c], init + c * VW, sizeof(V));

    // lane permutations of the concatenation (a, b): the slots shifted by one
    VI up, dn;  // up: (a[1..VW-1], b[0]); dn: (a[VW-1], b[0..VW-2])
    for (int l = 0; l < VW; ++l) { up[l] = l + 1; dn[l] = VW - 1 + l; }
    const V vinf = V{} + inf, vninf = V{} - inf;
    const int hc = (int)(h / VW), hl = (int)(h % VW);

    for (std::ptrdiff_t i = 0;; ++i) {
        const T med = w[hc][hl];
        y[i] = subtract ? (T)(x[i] - med) : med;
        if (i + 1 == n) break;
        const T out = val(i - h), in = val(i + h + 1);
        const V vin = V{} + in, vout = V{} + out;
        if (in >= out) {
            // ascending: slot c needs the old slot c + 1, not yet overwritten
#pragma GCC unroll 64
            for (int c = 0; c < NC; ++c) {
                const V cur = w[c];
                const V nxt = __builtin_shuffle(cur, c + 1 < NC ? w[c + 1] : vinf, up);
                const V mn = nxt < vin ? nxt : vin;
                const V mx = cur > mn ? cur : mn;
                w[c] = cur < vout ? cur : mx;
            }
        } else {
            // descending: slot c needs the old slot c - 1
#pragma GCC unroll 64
            for (int c = NC - 1; c >= 0; --c) {
                const V cur = w[c];
                const V prv = __builtin_shuffle(c > 0 ? w[c - 1] : vninf, cur, dn);
                const V mx = prv > vin ? prv : vin;
                const V mn = cur < mx ? cur : mx;
                w[c] = prv < vout ? mn : cur;
            }
        }
    }
}

// Slots in vector registers for windows up to 32 vectors; 0 means "use the
// memory fallback".
template <class T>
static int median_chunks(std::ptrdiff_t k) {
    constexpr int VW = ECGK_VBYTES / sizeof(T);
    const std::ptrdiff_t nc = (k + VW - 1) / VW;
    static const int sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32};
    for (int s : sizes)
        if (nc <= s) return s;
    return 0;
}

// Branch-free variant: delete `out`, then insert `in`, in one ascending sweep:
//   w'[i]  = w[i] < out ? w[i] : w[i+1]            (drop the first copy of out)
//   w''[i] = w'[i] < in ? w'[i] : max(w'[i-1], in)  (insert before the first >= in)
// 7 vector instructions per VW slots instead of 5, but no branch on the sign of
// in - out, which is random on noisy signals (method 4, for A/B timings).
template <class T, int NC>
static void median_row_reg_nb(const T* x, T* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract) {
    constexpr int VW = ECGK_VBYTES / sizeof(T);
    typedef T V __attribute__((vector_size(ECGK_VBYTES)));
    typedef typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type I;
    typedef I VI __attribute__((vector_size(ECGK_VBYTES)));
    const T inf = std::numeric_limits<T>::infinity();
    const std::ptrdiff_t h = k / 2;
    auto val = [&](std::ptrdiff_t p) -> T { return (p >= 0 && p < n) ? x[p] : (T)0; };
    alignas(64) T init[NC * VW];
    for (std::ptrdiff_t j = 0; j < k; ++j) init[j] = val(j - h);
    std::sort(init, init + k);
    for (int j = (int)k; j < NC * VW; ++j) init[j] = inf;
    V w[NC];
    for (int c = 0; c < NC; ++c) std::memcpy(&w[c], init + c * VW, sizeof(V));
    VI up, dn;
    for (int l = 0; l < VW; ++l) { up[l] = l + 1; dn[l] = VW - 1 + l; }
    const V vinf = V{} + inf, vninf = V{} - inf;
    const int hc = (int)(h / VW), hl = (int)(h % VW);
    for (std::ptrdiff_t i = 0;; ++i) {
        const T med = w[hc][hl];
        y[i] = subtract ? (T)(x[i] - med) : med;
        if (i + 1 == n) break;
        const V vin = V{} + val(i + h + 1), vout = V{} + val(i - h);
        V carry = vninf;  // w' of the previous vector
#pragma GCC unroll 64
        for (int c = 0; c < NC; ++c) {
            const V cur = w[c];
            const V nxt = __builtin_shuffle(cur, c + 1 < NC ? w[c + 1] : vinf, up);
            const V del = cur < vout ? cur : nxt;
            const V prv = __builtin_shuffle(carry, del, dn);
            const V mx = prv > vin ? prv : vin;
            w[c] = del < vin ? del : mx;
            carry = del;
        }
    }
}

template <class T>
static bool median_row_nb(const T* x, T* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract) {
    switch (median_chunks<T>(k)) {
#define ECGK_MC(N) case N: median_row_reg_nb<T, N>(x, y, n, k, subtract); return true;
        ECGK_MC(1) ECGK_MC(2) ECGK_MC(3) ECGK_MC(4) ECGK_MC(5) ECGK_MC(6) ECGK_MC(7) ECGK_MC(8)
        ECGK_MC(10) ECGK_MC(12) ECGK_MC(14) ECGK_MC(16) ECGK_MC(20) ECGK_MC(24) ECGK_MC(28) ECGK_MC(32)
#undef ECGK_MC
        default: return false;
    }
}
static bool median_rows_nb_f32(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    return median_row_nb<float>(x, y, n, k, s);
}
static bool median_rows_nb_f64(const double* x, double* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    return median_row_nb<double>(x, y, n, k, s);
}

template <class T>
static bool median_row_branchy(const T* x, T* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract) {
    switch (median_chunks<T>(k)) {
#define ECGK_MC(N) case N: median_row_reg<T, N>(x, y, n, k, subtract); return true;
        ECGK_MC(1) ECGK_MC(2) ECGK_MC(3) ECGK_MC(4) ECGK_MC(5) ECGK_MC(6) ECGK_MC(7) ECGK_MC(8)
        ECGK_MC(10) ECGK_MC(12) ECGK_MC(14) ECGK_MC(16) ECGK_MC(20) ECGK_MC(24) ECGK_MC(28) ECGK_MC(32)
#undef ECGK_MC
        default: return false;
    }
}
// Up to 4 vectors the branch-free sweep wins (1.2-1.4x, its 2 extra
// instructions per vector cost less than the mispredicted branch); beyond, the
// branchy one (measured on AVX-512, benchmarks/results/signal.md).
template <class T>
static bool median_row_fast(const T* x, T* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract) {
    const int nc = median_chunks<T>(k);
    if (nc > 0 && nc <= 4) return median_row_nb<T>(x, y, n, k, subtract);
    return median_row_branchy<T>(x, y, n, k, subtract);
}
static bool median_rows_br_f32(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    return median_row_branchy<float>(x, y, n, k, s);
}
static bool median_rows_br_f64(const double* x, double* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    return median_row_branchy<double>(x, y, n, k, s);
}
static bool median_rows_f32(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    return median_row_fast<float>(x, y, n, k, s);
}
static bool median_rows_f64(const double* x, double* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    return median_row_fast<double>(x, y, n, k, s);
}
