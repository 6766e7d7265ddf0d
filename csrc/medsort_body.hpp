// Running median for windows of up to 255 / 511 samples (float32, AVX-512):
// Suomela's block algorithm (J. Suomela, "Median filtering is equivalent to
// sorting", arXiv:1406.1717, 2014) with the sorting and merging done by bitonic
// networks in zmm registers, and the median walk run for several block pairs at
// once. Textually included by medfilt.cpp inside the AVX-512 namespace (hence
// no include guard); needs <immintrin.h> and the mb_key helpers of
// medblock_body.hpp.
//
// Layout. The zero-padded row p (p[i] = x[i - k/2], 0 outside) is cut into
// blocks of N = 256 (k <= 255) or 512 (k <= 511) samples, N >= k. Output
// i = b*N + j is the median of positions j .. j + k - 1 of the concatenation
// A | B of blocks b and b + 1, so one pair of blocks serves N outputs (blocks of
// exactly k samples, as in the paper, would waste the network's padding). Every
// sample becomes a 64-bit entry, order-preserving key << 32 | tag with tag =
// parity(b) * N + offset, so entries are unique, ordered like the floats, and
// the two blocks of a pair never collide.
//
// Per block: one bitonic sort of N entries (N / 8 zmm, min/max on unsigned
// 64-bit; columns first, then 8 x 8 transposes and merges). Per pair: one
// bitonic merge of the two sorted blocks gives every position of A | B its rank
// 0..2N-1, and the merged array gives the value at a rank. The window is a set
// of k ranks kept as a bit mask: a step clears the rank of position j, sets the
// rank of position j + k, and the median moves by at most one set bit (to the
// next or the previous one), chosen without a data-dependent branch from the
// count of ranks that crossed it. The walk has a loop-carried latency of a
// dozen cycles, so ECGK_MS_G pairs walk interleaved.
//
// Results are samples selected by rank, bit for bit those of
// scipy.signal.medfilt (entries with equal keys are equal floats).

// GCC 12 reports the _mm512_undefined_*() operand inside its own AVX-512
// intrinsics as uninitialised once they are inlined (thousands of false
// positives from the unrolled networks); the operand is meant to be undefined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#ifndef ECGK_MS_G
#define ECGK_MS_G 2
#endif

namespace ms {

static inline __m512i rev8() { return _mm512_set_epi64(0, 1, 2, 3, 4, 5, 6, 7); }

// compare-exchange of lane l with lane l ^ d inside one vector; `up` marks the
// lanes that take the larger entry
static inline __m512i cx_lane(__m512i v, __m512i idx, __mmask8 up) {
    const __m512i p = _mm512_permutexvar_epi64(idx, v);
    return _mm512_mask_blend_epi64(up, _mm512_min_epu64(v, p), _mm512_max_epu64(v, p));
}

// the three in-vector stages of a bitonic merge (distances 4, 2, 1)
static inline __m512i tail3(__m512i v) {
    const __m512i i4 = _mm512_set_epi64(3, 2, 1, 0, 7, 6, 5, 4);
    const __m512i i2 = _mm512_set_epi64(5, 4, 7, 6, 1, 0, 3, 2);
    const __m512i i1 = _mm512_set_epi64(6, 7, 4, 5, 2, 3, 0, 1);
    v = cx_lane(v, i4, 0xF0);
    v = cx_lane(v, i2, 0xCC);
    return cx_lane(v, i1, 0xAA);
}

// 8 x 8 transpose of 64-bit entries: t[c] lane r = r[r] lane c.
static inline void transpose8(const __m512i* r, __m512i* t) {
    __m512i a[8], b[8];
    for (int i = 0; i < 4; ++i) {
        a[2 * i] = _mm512_unpacklo_epi64(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi64(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h) {
        const int o = 4 * h;
        b[o + 0] = _mm512_shuffle_i64x2(a[o + 0], a[o + 2], 0x88);
        b[o + 1] = _mm512_shuffle_i64x2(a[o + 1], a[o + 3], 0x88);
        b[o + 2] = _mm512_shuffle_i64x2(a[o + 0], a[o + 2], 0xDD);
        b[o + 3] = _mm512_shuffle_i64x2(a[o + 1], a[o + 3], 0xDD);
    }
    for (int c = 0; c < 4; ++c) {
        t[c] = _mm512_shuffle_i64x2(b[c], b[c + 4], 0x88);
        t[c + 4] = _mm512_shuffle_i64x2(b[c], b[c + 4], 0xDD);
    }
}

#define ECGK_MS_INLINE inline __attribute__((always_inline))

// The networks below are written as templates on the stage distances so that
// every loop unrolls completely: vector indices become constants, the skipped
// half of each stage costs nothing, and the compiler can keep vectors in
// registers (a loop with computed indices would load and store both vectors of
// every compare-exchange and branch on the index pattern).

// Rest of a bitonic merge on v[0 .. 2 * DV) after its first stage: stage DV,
// then the two halves on their own, depth first, so that the innermost levels
// work on few enough vectors to stay in registers. TAIL: finish each vector
// with the in-vector stages (entry-level merges); else stop at whole vectors
// (column merges).
template <int DV, bool TAIL>
static ECGK_MS_INLINE void merge_rec(__m512i* v) {
    if constexpr (DV == 0) {
        if constexpr (TAIL) v[0] = tail3(v[0]);
    } else {
#pragma GCC unroll 128
        for (int I = 0; I < DV; ++I) {
            const __m512i lo = _mm512_min_epu64(v[I], v[I + DV]), hi = _mm512_max_epu64(v[I], v[I + DV]);
            v[I] = lo;
            v[I + DV] = hi;
        }
        merge_rec<DV / 2, TAIL>(v);
        merge_rec<DV / 2, TAIL>(v + DV);
    }
}
// After the flip stage of merges of SV vectors: each half-block of SV / 2
// vectors is bitonic and is merged on its own.
template <int NV, int SV, bool TAIL>
static ECGK_MS_INLINE void halves(__m512i* v) {
#pragma GCC unroll 64
    for (int b = 0; b < NV; b += SV / 2) merge_rec<SV / 4, TAIL>(v + b);
}

// Flip stage of a merge of SV vectors: vector I against I ^ (SV - 1); REV also
// reverses the lanes (entry-level flip), else columns are compared as they are.
template <int NV, int SV, bool REV>
static ECGK_MS_INLINE void stage_flip(__m512i* v) {
    const __m512i f7 = rev8();
#pragma GCC unroll 128
    for (int I = 0; I < NV; ++I) {
        if (I & (SV / 2)) continue;
        const int J = I ^ (SV - 1);
        if constexpr (REV) {
            const __m512i rb = _mm512_permutexvar_epi64(f7, v[J]);
            const __m512i lo = _mm512_min_epu64(v[I], rb), hi = _mm512_max_epu64(v[I], rb);
            v[I] = lo;
            v[J] = _mm512_permutexvar_epi64(f7, hi);
        } else {
            const __m512i lo = _mm512_min_epu64(v[I], v[J]), hi = _mm512_max_epu64(v[I], v[J]);
            v[I] = lo;
            v[J] = hi;
        }
    }
}
// Column sort: every lane sorted across the NV vectors (merge sizes SV..NV).
template <int NV, int SV>
static ECGK_MS_INLINE void column_levels(__m512i* v) {
    if constexpr (SV <= NV) {
        stage_flip<NV, SV, false>(v);
        halves<NV, SV, false>(v);
        column_levels<NV, SV * 2>(v);
    }
}
// Entry-level merges of sizes 8 * SV .. 8 * NV entries (runs of 4 * SV entries sorted).
template <int NV, int SV>
static ECGK_MS_INLINE void merge_levels(__m512i* w) {
    if constexpr (SV <= NV) {
        stage_flip<NV, SV, true>(w);
        halves<NV, SV, true>(w);
        merge_levels<NV, SV * 2>(w);
    }
}

// Ascending sort of NV vectors (8 * NV entries). First every lane (column) is
// sorted across the NV vectors with min/max only (a bitonic network on whole
// vectors, no shuffles); 8 x 8 transposes then make each column a sorted run of
// NV entries in NV / 8 consecutive vectors, and bitonic merges finish the job.
// Each merge of size s starts with the "flip" stage (i against i ^ (s - 1)), so
// every compare-exchange puts the smaller entry at the lower index and no
// direction masks are needed.
template <int NV>
static ECGK_MS_INLINE void bsort(__m512i* v) {
    static_assert(NV % 8 == 0 && NV >= 16, "whole 8 x 8 tiles, at least two runs");
    constexpr int Q = NV / 8;  // vectors per sorted run after the transposes
    column_levels<NV, 2>(v);
    __m512i w[NV];
#pragma GCC unroll 16
    for (int q = 0; q < Q; ++q) {
        __m512i t[8];
        transpose8(v + 8 * q, t);
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) w[c * Q + q] = t[c];  // column c, rows 8q..8q+7
    }
    merge_levels<NV, 2 * Q>(w);
#pragma GCC unroll 128
    for (int I = 0; I < NV; ++I) v[I] = w[I];
}

// Merge two ascending runs a[0..NV) and b[0..NV) into c[0..2NV) ascending.
template <int NV>
static ECGK_MS_INLINE void bmerge(const __m512i* a, const __m512i* b, __m512i* c) {
    const __m512i f7 = rev8();
#pragma GCC unroll 128
    for (int I = 0; I < NV; ++I) {
        // flip stage of the size-2N merge: entry i against 2N - 1 - i
        const __m512i rb = _mm512_permutexvar_epi64(f7, b[NV - 1 - I]);
        c[I] = _mm512_min_epu64(a[I], rb);
        c[2 * NV - 1 - I] = _mm512_permutexvar_epi64(f7, _mm512_max_epu64(a[I], rb));
    }
    merge_rec<NV / 2, true>(c);
    merge_rec<NV / 2, true>(c + NV);
}

// float32 -> order-preserving key (the scalar mb_key, 16 lanes)
static inline __m512i keys16(__m512 v) {
    const __m512i b = _mm512_castps_si512(v);
    const __m512i neg = _mm512_srai_epi32(b, 31);
    return _mm512_xor_si512(b, _mm512_or_si512(neg, _mm512_set1_epi32((int)0x80000000u)));
}
// key -> float32 (inverse of keys16)
static inline __m512 unkeys16(__m512i k) {
    const __m512i t = _mm512_srai_epi32(k, 31);  // all ones where the key's top bit is set (value >= +0)
    const __m512i m = _mm512_or_si512(_mm512_andnot_si512(t, _mm512_set1_epi32(-1)), _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_xor_si512(k, m));
}

// Sorted entries of block b of the padded row: padded positions b*N .. b*N + N - 1
// (N = 8 * NV; zeros outside the signal).
template <int NV>
static inline void sort_block(const float* x, std::ptrdiff_t n, std::ptrdiff_t k, std::ptrdiff_t b, __m512i* out,
                              float* tmp) {
    constexpr int N = 8 * NV;
    const std::ptrdiff_t h = k / 2, q0 = b * N - h;
    const float* src;
    if (q0 >= 0 && q0 + N <= n) {
        src = x + q0;
    } else {
        for (std::ptrdiff_t j = 0; j < N; ++j) {
            const std::ptrdiff_t q = q0 + j;
            tmp[j] = (q >= 0 && q < n) ? x[q] : 0.0f;
        }
        src = tmp;
    }
    const __m512i tag0 = _mm512_add_epi64(_mm512_set1_epi64((b & 1) * N), _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0));
    for (int I = 0; I < NV; I += 2) {
        const std::ptrdiff_t j0 = 8 * (std::ptrdiff_t)I;
        const __m512i kk = keys16(_mm512_loadu_ps(src + j0));
        const __m512i klo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(kk));
        const __m512i khi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(kk, 1));
        out[I] = _mm512_or_si512(_mm512_slli_epi64(klo, 32), _mm512_add_epi64(tag0, _mm512_set1_epi64(j0)));
        out[I + 1] = _mm512_or_si512(_mm512_slli_epi64(khi, 32), _mm512_add_epi64(tag0, _mm512_set1_epi64(j0 + 8)));
    }
    bsort<NV>(out);
}

// Index of the c-th (0-based) set bit of the mask (it has more than c).
static inline uint32_t select_bit(const uint64_t* m, int c) {
    int w = 0;
    for (;; ++w) {
        const int pc = __builtin_popcountll(m[w]);
        if (c < pc) break;
        c -= pc;
    }
    return (uint32_t)(64 * w) + (uint32_t)__builtin_ctzll(_pdep_u64(1ull << c, m[w]));
}
static inline uint32_t next_set(const uint64_t* m, uint32_t p) {
    uint32_t w = p >> 6;
    uint64_t bits = (m[w] >> (p & 63)) >> 1;
    if (bits) return p + 1 + (uint32_t)__builtin_ctzll(bits);
    while (!m[++w]) {
    }
    return 64 * w + (uint32_t)__builtin_ctzll(m[w]);
}
static inline uint32_t prev_set(const uint64_t* m, uint32_t p) {
    uint32_t w = p >> 6;
    uint64_t bits = m[w] & ((1ull << (p & 63)) - 1);
    if (bits) return 64 * w + 63 - (uint32_t)__builtin_clzll(bits);
    while (!m[--w]) {
    }
    return 64 * w + 63 - (uint32_t)__builtin_clzll(m[w]);
}

// One pair's state for the walk.
template <int NV>
struct Slot {
    __m512i c[2 * NV];          // the pair's entries in rank order
    uint16_t ra[16 * NV];       // position in A | B -> rank
    uint64_t mask[NV / 4 + 1];  // window ranks (2N bits; one spare word)
    uint32_t out[8 * NV];       // key of the median at each step
};

template <int NV>
static inline void prepare(Slot<NV>& s, const __m512i* A, const __m512i* B, std::ptrdiff_t k, int pa) {
    constexpr int N = 8 * NV;
    constexpr int LOGN = NV == 32 ? 8 : 9;
    static_assert(NV == 32 || NV == 64, "256- or 512-entry blocks");
    bmerge<NV>(A, B, s.c);
    const uint64_t* e = reinterpret_cast<const uint64_t*>(s.c);
    // ra is indexed by position in the concatenation A | B (the tag holds the
    // block parity, which says which of the two the entry came from)
    const uint32_t flip = (uint32_t)pa << LOGN;
    for (int m = 0; m < 2 * N; ++m) s.ra[((uint32_t)e[m] & (2 * N - 1)) ^ flip] = (uint16_t)m;
    // the first window: A offsets 0..k-1
    const __m512i low = _mm512_set1_epi64(2 * N - 1), base = _mm512_set1_epi64((long long)pa * N),
                  kk = _mm512_set1_epi64(k);
    for (int w = 0; w < NV / 4; ++w) {
        uint64_t bits = 0;
        for (int q = 0; q < 8; ++q) {
            const __m512i off = _mm512_sub_epi64(_mm512_and_si512(s.c[8 * w + q], low), base);
            bits |= (uint64_t)_mm512_cmplt_epu64_mask(off, kk) << (8 * q);
        }
        s.mask[w] = bits;
    }
    s.mask[NV / 4] = 0;
}

// One step of the walk: the sample of rank r1 leaves, the one of rank r2
// enters, and p (rank of the median: a set bit with exactly h set bits below)
// is updated. The median moves by at most one set bit, and to the previous one
// only when a rank below it entered without one below leaving.
static inline uint32_t step(uint64_t* M, uint32_t p, uint32_t r1, uint32_t r2) {
    M[r1 >> 6] &= ~(1ull << (r1 & 63));
    M[r2 >> 6] |= 1ull << (r2 & 63);
    const uint64_t w = M[p >> 6];
    const uint32_t bi = p & 63;
    const uint64_t sh = w >> bi;
    // v = 2 * (set bits below p minus h) + (p still set): <= 0 next, 1 stay, >= 2 previous
    const int v = 2 * ((int)(r2 < p) - (int)(r1 < p)) + (int)(sh & 1);
    const uint64_t up = sh >> 1;
    const uint64_t dn = w & ((1ull << bi) - 1);
    uint32_t nx = p + 1 + (uint32_t)__builtin_ctzll(up | (1ull << 63));
    uint32_t pv = (p | 63u) - (uint32_t)__builtin_clzll(dn | 1);
    const bool down = v >= 2;
    if (__builtin_expect(v != 1 && (down ? dn : up) == 0, 0)) {
        if (down) pv = prev_set(M, p);
        else nx = next_set(M, p);
    }
    const uint32_t q = v == 1 ? p : nx;
    return down ? pv : q;
}

template <int NV>
static void median_row(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract) {
    constexpr int G = ECGK_MS_G;
    const std::ptrdiff_t h = k / 2;
    constexpr int N = 8 * NV;
    const std::ptrdiff_t npairs = (n + N - 1) / N;  // each pair gives N outputs
    const std::ptrdiff_t ngroups = (npairs + G - 1) / G;
    // One 64-byte aligned scratch area per thread, grown on demand (std::vector
    // and thread_local storage of a dlopen'ed module do not keep the 64-byte
    // alignment of __m512i).
    struct Scratch {
        void* mem = nullptr;
        size_t cap = 0;
        ~Scratch() { std::free(mem); }
    };
    static thread_local Scratch S;
    const size_t slot_b = (sizeof(Slot<NV>) + 63) & ~(size_t)63;
    const size_t blk_b = 2 * NV * sizeof(__m512i), tmp_b = ((8 * NV + 16) * sizeof(float) + 63) & ~(size_t)63;
    const size_t need = blk_b + G * slot_b + tmp_b + (size_t)(ngroups * G * N + 16) * sizeof(uint32_t);
    if (S.cap < need) {
        std::free(S.mem);
        S.mem = std::aligned_alloc(64, (need + 63) & ~(size_t)63);
        if (!S.mem) throw std::bad_alloc();
        S.cap = need;
    }
    char* base = static_cast<char*>(S.mem);
    __m512i* blk[2] = {reinterpret_cast<__m512i*>(base), reinterpret_cast<__m512i*>(base) + NV};
    Slot<NV>* slots = reinterpret_cast<Slot<NV>*>(base + blk_b);
    float* tmp = reinterpret_cast<float*>(base + blk_b + G * slot_b);
    uint32_t* keys = reinterpret_cast<uint32_t*>(base + blk_b + G * slot_b + tmp_b);
    sort_block<NV>(x, n, k, 0, blk[0], tmp);
    for (std::ptrdiff_t g = 0; g < ngroups; ++g) {
        uint32_t p[G];
        for (int l = 0; l < G; ++l) {
            const std::ptrdiff_t b = g * G + l;
            sort_block<NV>(x, n, k, b + 1, blk[(b + 1) & 1], tmp);
            prepare<NV>(slots[l], blk[b & 1], blk[(b + 1) & 1], k, (int)(b & 1));
            p[l] = select_bit(slots[l].mask, (int)h);
        }
        // every per-lane address is a constant offset from `slots`, so the unrolled
        // lanes need no pointer registers of their own. Step j: position j of
        // A | B leaves, position j + k enters.
        for (std::ptrdiff_t j = 0; j < N; ++j) {
#pragma GCC unroll 8
            for (int l = 0; l < G; ++l) {
                Slot<NV>& sl = slots[l];
                sl.out[j] = (uint32_t)(reinterpret_cast<const uint64_t*>(sl.c)[p[l]] >> 32);
                p[l] = step(sl.mask, p[l], sl.ra[j], sl.ra[j + k]);
            }
        }
        for (int l = 0; l < G; ++l) {
            const std::ptrdiff_t i0 = (g * G + l) * N;
            if (i0 < n) std::memcpy(keys + i0, slots[l].out, sizeof(uint32_t) * (size_t)std::min<std::ptrdiff_t>(N, n - i0));
        }
    }
    // keys back to floats, minus from the signal if asked
    std::ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 med = unkeys16(_mm512_loadu_si512(keys + i));
        _mm512_storeu_ps(y + i, subtract ? _mm512_sub_ps(_mm512_loadu_ps(x + i), med) : med);
    }
    if (i < n) {
        const __mmask16 lm = (__mmask16)((1u << (n - i)) - 1u);
        const __m512 med = unkeys16(_mm512_maskz_loadu_epi32(lm, keys + i));
        _mm512_mask_storeu_ps(y + i, lm, subtract ? _mm512_sub_ps(_mm512_maskz_loadu_ps(lm, x + i), med) : med);
    }
}

}  // namespace ms

// Largest window the sorted-block kernel takes (blocks of up to 512 slots).
static inline std::ptrdiff_t median_sorted_max_k() { return 511; }

static void median_rows_sorted_f32(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s) {
    if (k <= 255) ms::median_row<32>(x, y, n, k, s);
    else ms::median_row<64>(x, y, n, k, s);
}

#pragma GCC diagnostic pop
