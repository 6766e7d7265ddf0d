// Running median by sorting blocks (after J. Suomela, "Median filtering is
// equivalent to sorting", arXiv:1406.1717, 2014); compiled once per
// instruction set by medfilt.cpp (textually included inside a namespace, hence
// no include guard and no #include).
//
// The zero-padded row p (length n + k - 1, p[i] = x[i - k/2], 0 outside) is cut
// into blocks of k samples. The window starting at i = b*k + j holds the last
// k - j samples of block b ("A") and the first j samples of block b + 1 ("B").
// Each block is sorted once (with its offsets); the two sorted blocks of a pair
// are merged, which gives every sample of A and B a unique rank in 0..2k-1.
// The window is then a set of k ranks, kept as a bit mask of 2k bits: one step
// clears the bit of A[j] and sets the bit of B[j], and the median is the
// (k/2)-th set bit, found from a word pointer that moves with the median (the
// median moves by at most one element per step, so the pointer moves O(1)
// words amortised) plus a bit select inside one word (pdep + tzcnt).
//
// Cost per sample: one sort of k elements per k samples (O(log k)), a merge
// (O(1)) and a constant number of bit operations. Results are samples of the
// window (or padding zeros) selected by rank, so they equal scipy.signal.medfilt
// bit for bit; ties are broken by the order of the sort keys, which cannot
// change the selected value (equal keys are equal bit patterns).

// Order-preserving integer keys: unsigned comparison of the keys is the float
// order (-inf < ... < -0.0 < +0.0 < ... < +inf). NaN never reaches here.
static inline uint32_t mb_key(float v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
static inline float mb_unkey(uint32_t k) {
    // keys with the top bit set were non-negative: clear it; others: invert
    const uint32_t neg = (k >> 31) - 1u;  // all ones when k < 2^31
    const uint32_t b = (k & 0x7fffffffu) ^ (neg & 0x7fffffffu) ^ (neg & 0x80000000u);
    float v;
    std::memcpy(&v, &b, 4);
    return v;
}
static inline uint64_t mb_key(double v) {
    uint64_t b;
    std::memcpy(&b, &v, 8);
    return (b >> 63) ? ~b : (b | (1ull << 63));
}

// Sorted entries: float32 packs (key << 32 | offset) into one integer, so the
// sort moves 8-byte words and needs no separate payload.
template <class T>
struct MbEntry;
template <>
struct MbEntry<float> {
    typedef uint64_t E;
    static inline E make(float v, uint32_t off) { return ((uint64_t)mb_key(v) << 32) | off; }
    static inline bool le(const E& a, const E& b) { return a <= b; }
    static inline float value(const E& e) { return mb_unkey((uint32_t)(e >> 32)); }
    static inline E pick(std::ptrdiff_t ta, E a, E b) {
        const uint64_t m = (uint64_t)0 - (uint64_t)ta;
        return (a & m) | (b & ~m);
    }
    static inline uint32_t off(const E& e) { return (uint32_t)e; }
    static inline E sentinel() { return ~(uint64_t)0; }
    static inline E low() { return 0; }
    // LSD radix sort on the 4 key bytes (the offset in the low word is already
    // in order within each bucket, since blocks are filled by offset): no
    // data-dependent branches, unlike a comparison sort whose mispredictions
    // dominated. Passes whose byte is the same for every key are skipped (the
    // top byte of ECG samples of one block usually is).
    static inline void sort(E* a, std::ptrdiff_t n) {
        if (n < 32) { std::sort(a, a + n); return; }
        uint32_t cnt[4][256];
        std::memset(cnt, 0, sizeof(cnt));
        for (std::ptrdiff_t i = 0; i < n; ++i) {
            const uint32_t kk = (uint32_t)(a[i] >> 32);
            ++cnt[0][kk & 255];
            ++cnt[1][(kk >> 8) & 255];
            ++cnt[2][(kk >> 16) & 255];
            ++cnt[3][kk >> 24];
        }
        std::vector<E>& tmpv = scratch();
        if ((std::ptrdiff_t)tmpv.size() < n) tmpv.resize(n);
        E* src = a;
        E* dst = tmpv.data();
        for (int p = 0; p < 4; ++p) {
            uint32_t* c = cnt[p];
            const int sh = 32 + 8 * p;
            if (c[(src[0] >> sh) & 255] == (uint32_t)n) continue;  // one bucket: order unchanged
            uint32_t sum = 0;
            for (int d = 0; d < 256; ++d) {
                const uint32_t t = c[d];
                c[d] = sum;
                sum += t;
            }
            for (std::ptrdiff_t i = 0; i < n; ++i) dst[c[(src[i] >> sh) & 255]++] = src[i];
            std::swap(src, dst);
        }
        if (src != a) std::memcpy(a, src, n * sizeof(E));
    }
    static std::vector<E>& scratch() {
        static thread_local std::vector<E> v;
        return v;
    }
};
template <>
struct MbEntry<double> {
    struct E {
        uint64_t key;
        double v;
        uint32_t off;
    };
    static inline E make(double v, uint32_t off) { return E{mb_key(v), v, off}; }
    static inline bool le(const E& a, const E& b) { return a.key <= b.key; }
    static inline double value(const E& e) { return e.v; }
    static inline E pick(std::ptrdiff_t ta, const E& a, const E& b) { return ta ? a : b; }
    static inline uint32_t off(const E& e) { return e.off; }
    static inline E sentinel() { return E{~(uint64_t)0, 0.0, 0}; }
    static inline E low() { return E{0, 0.0, 0}; }
    static inline void sort(E* a, std::ptrdiff_t n) {
        std::sort(a, a + n, [](const E& p, const E& q) { return p.key < q.key; });
    }
};

// Index of the c-th (0-based) set bit of w; w has more than c set bits.
static inline int mb_select(uint64_t w, int c) {
#if defined(ECGK_MB_PDEP)
    // the target pragma enables BMI2 here without defining __BMI2__
    return __builtin_ctzll(__builtin_ia32_pdep_di(1ull << c, w));
#else
    for (; c > 0; --c) w &= w - 1;
    return __builtin_ctzll(w);
#endif
}

template <class T>
static void median_row_block(const T* x, T* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract) {
    typedef MbEntry<T> M;
    typedef typename M::E E;
    const std::ptrdiff_t h = k / 2;
    const int nw = (int)((2 * k + 63) / 64);
    std::vector<E> sa_(k + 2), sb_(k + 2);
    std::vector<T> mv(2 * k);
    std::vector<int32_t> ra(2 * k);
    const int32_t* rb = ra.data() + k;
    std::vector<uint64_t> mask(nw);
    // one sentinel before and after each sorted block stops the two merges
    E* sa = sa_.data() + 1;
    E* sb = sb_.data() + 1;
    sa[-1] = sb[-1] = M::low();
    auto sort_block = [&](E* s, std::ptrdiff_t b) {
        // block b covers padded positions b*k .. b*k+k-1, i.e. x[b*k - h ..]
        const std::ptrdiff_t q0 = b * k - h;
        for (std::ptrdiff_t j = 0; j < k; ++j) {
            const std::ptrdiff_t q = q0 + j;
            s[j] = M::make((q >= 0 && q < n) ? x[q] : (T)0, (uint32_t)j);
        }
        M::sort(s, k);
        s[k] = M::sentinel();  // never taken: each merge side makes exactly k outputs
    };
    sort_block(sa, 0);
    for (std::ptrdiff_t b = 0; b * k < n; ++b) {
        sort_block(sb, b + 1);
        // merge: rank of every A and B sample in the pair, and the value at each
        // rank; ranks of A go to rab[0..k), of B to rab[k..2k). Written without
        // branches (the comparison outcome is random, so a branchy merge
        // mispredicts about every other element), and from both ends at once:
        // each side is a chain of dependent loads, two chains overlap. Equal
        // entries order A before B on both sides.
        {
            std::ptrdiff_t i = 0, j = 0, ib = k - 1, jb = k - 1;
            int32_t* rab = ra.data();
            for (int m = 0; m < (int)k; ++m) {
                const E ea = sa[i], eb = sb[j];
                const std::ptrdiff_t ta = M::le(ea, eb);
                const E e = M::pick(ta, ea, eb);
                mv[m] = M::value(e);
                rab[M::off(e) + (1 - ta) * k] = m;
                i += ta;
                j += 1 - ta;
                const E fa = sa[ib], fb = sb[jb];
                const std::ptrdiff_t tb = M::le(fa, fb);  // the larger is B's unless A's is strictly larger
                const E f = M::pick(tb, fb, fa);
                const int mb = (int)(2 * k - 1) - m;
                mv[mb] = M::value(f);
                rab[M::off(f) + tb * k] = mb;
                ib -= 1 - tb;
                jb -= tb;
            }
        }
        std::fill(mask.begin(), mask.end(), 0);
        for (std::ptrdiff_t j = 0; j < k; ++j) mask[ra[j] >> 6] |= 1ull << (ra[j] & 63);
        int wi = 0;               // word holding the median
        std::ptrdiff_t below = 0;  // set bits in words before wi
        const std::ptrdiff_t i0 = b * k, jn = (n - i0 < k) ? n - i0 : k;
        for (std::ptrdiff_t j = 0;; ++j) {
            while (below > h) below -= __builtin_popcountll(mask[--wi]);
            for (;;) {
                const int c = __builtin_popcountll(mask[wi]);
                if (below + c > h) break;
                below += c;
                ++wi;
            }
            const T med = mv[wi * 64 + mb_select(mask[wi], (int)(h - below))];
            const std::ptrdiff_t i = i0 + j;
            y[i] = subtract ? (T)(x[i] - med) : med;
            if (j + 1 == jn) break;
            // slide: A[j] leaves, B[j] enters
            const int r1 = ra[j], r2 = rb[j];
            mask[r1 >> 6] &= ~(1ull << (r1 & 63));
            below -= (r1 >> 6) < wi;
            mask[r2 >> 6] |= 1ull << (r2 & 63);
            below += (r2 >> 6) < wi;
        }
        std::swap(sa, sb);
    }
}

static void median_rows_block_f32(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    median_row_block<float>(x, y, n, k, s);
}
static void median_rows_block_f64(const double* x, double* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    median_row_block<double>(x, y, n, k, s);
}
