// Running median for windows of up to 255 / 511 samples (float32, AVX-512):
// Suomela's block algorithm (J. Suomela, "Median filtering is equivalent to
// sorting", arXiv:1406.1717, 2014) with the sorting and merging done by bitonic
// networks in zmm registers, and the median walk run for several block pairs at
// once. Textually included by medfilt.cpp inside the AVX-512 namespace (hence
// no include guard); needs <immintrin.h>. The default fast path now walks with
// medfilt_walk16.hpp (16 outputs per group, each found without waiting on the
// previous one); the walk below only serves windows of k < 16.
//
// Layout. The zero-padded row p (p[i] = x[i - k/2], 0 outside) is cut into
// blocks of N = 256 (k <= 255) or 512 (k <= 511) samples, N >= k. Output
// i = b*N + j is the median of positions j .. j + k - 1 of the concatenation
// A | B of blocks b and b + 1, so one pair of blocks serves N outputs (blocks of
// exactly k samples, as in the paper, would waste the network's padding).
//
// Entries. Every sample becomes a unique integer entry ordered like the
// samples: either 64 bits, order-preserving float key << 32 | tag (exact: the
// key gives the sample back), or, for N = 256, 32 bits, a 23-bit key quantised
// over the row's range << 9 | tag (half the vector work per sort and merge, and
// a block's 16 vectors stay in registers). tag = parity(b) * N + offset, so the
// two blocks of a pair never collide.
//
// Per block: one sort (columns first, then transposes and bitonic merges). Per
// pair: one bitonic merge of the two sorted blocks gives the entries in rank
// order, hence rank -> position in A | B (`pos`) and rank -> sample (`val`).
// Rank r is in the window after step j when pos[r] - (j + 1) < k (unsigned), so
// one vector load and compare give the window membership of the 16 ranks around
// the median; the median moves by at most one window rank per step, and pdep
// selects it without a branch on the (data dependent) direction. The walk has
// a loop-carried latency of about 25 cycles, so ECGK_MS_G pairs walk
// interleaved.
//
// 32-bit sorts (bsort16, bmerge16; the 64-bit ones are as before). Any
// network that sorts gives the same order (entries are unique), so these only
// change the cost. Columns: the 60-comparator 16-input network instead of 80
// bitonic comparators. Entry-level stages: tail4x2, two vectors at a time (18
// vector operations per two vectors instead of 24). Flips: the upper operand
// of an entry-level flip keeps its lanes reversed afterwards (a reversed
// bitonic run is bitonic) and comes in reversed from the previous level's
// tails, so only the first level reverses lanes. Pairs: odd blocks are sorted
// descending (free, by reversing the last level's output), so A | B is
// bitonic and the pair merge starts with a plain lane-wise stage. Measured
// in-process against the previous build on the ecgfounder preset's filtered
// records (k = 201, 192 x 5000 rows): tail4x2 alone 12-13 % of the whole
// kernel, the network and the flip reversals 3-4 % more, the alternating
// block directions and the packed pos stores (medfilt_walk16.hpp prepare32)
// about 1 %. A perf profile put the walk at about 60 % afterwards, the block
// sort at 26 % and the pair merge and tables at 13 %. Tried and dropped:
// make_quant's range scan with four independent min / max chains (no
// change: the scan waits on memory, not on the vminps chain).
//
// Results. With 64-bit entries the output is the sample of the median's rank,
// bit for bit that of scipy.signal.medfilt (entries with equal keys are equal
// floats). With 32-bit entries it is the sample whose quantised key equals the
// exact median's: an actual sample of the window within one quantisation step
// (range * 2^-23, plus the float rounding of the scaling) of the exact median,
// and equal to it unless another sample of the window shares its key.

// GCC 12 reports the _mm512_undefined_*() operand inside its own AVX-512
// intrinsics as uninitialised once they are inlined (thousands of false
// positives from the unrolled networks); the operand is meant to be undefined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#ifndef ECGK_MS_G
#define ECGK_MS_G 5
#endif

namespace ms {

static inline __m512i rev8() { return _mm512_set_epi64(0, 1, 2, 3, 4, 5, 6, 7); }

// compare-exchange of lane l with lane l ^ d inside one vector; `up` marks the
// lanes that take the larger entry
static inline __m512i cx_lane(__m512i v, __m512i idx, __mmask8 up) {
    // masked min then masked max: two operations instead of min, max and blend
    const __m512i p = _mm512_permutexvar_epi64(idx, v);
    return _mm512_mask_max_epu64(_mm512_mask_min_epu64(v, (__mmask8)~up, v, p), up, v, p);
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
                              float* tmp, __m512i* unsorted) {
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
        unsorted[I] = out[I];
        unsorted[I + 1] = out[I + 1];
    }
    bsort<NV>(out);
}

// ---- 32-bit entries (blocks of 256): 16 per zmm ---------------------------
// An entry is q << 9 | tag, q a 23-bit key quantised over the row's range
// (zero included, for the padding) and tag = parity(b) * 256 + offset. Sorting
// 32-bit entries takes half the vector operations of 64-bit ones, and a block's
// 16 vectors stay in registers. The median walk then selects an entry whose q
// equals the q of the exact median, and the output is that entry's ORIGINAL
// sample: an actual sample within one quantisation step (range * 2^-23, plus
// float rounding of the scaling) of the exact median, and equal to it unless
// two different samples of the window share the median's q.

// compare-exchange of lane l with lane l ^ d; `up` marks the lanes that take
// the larger entry (masked min, then masked max: no blend)
static inline __m512i cx_lane32(__m512i v, __m512i idx, __mmask16 up) {
    const __m512i p = _mm512_permutexvar_epi32(idx, v);
    return _mm512_mask_max_epu32(_mm512_mask_min_epu32(v, (__mmask16)~up, v, p), up, v, p);
}
// the four in-vector stages of a bitonic merge (distances 8, 4, 2, 1), one
// vector (only left for a lone vector; merges use tail4x2)
static inline __m512i tail4(__m512i v) {
    const __m512i i8 = _mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
    const __m512i i4 = _mm512_set_epi32(11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4);
    const __m512i i2 = _mm512_set_epi32(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2);
    const __m512i i1 = _mm512_set_epi32(14, 15, 12, 13, 10, 11, 8, 9, 6, 7, 4, 5, 2, 3, 0, 1);
    v = cx_lane32(v, i8, 0xFF00);
    v = cx_lane32(v, i4, 0xF0F0);
    v = cx_lane32(v, i2, 0xCCCC);
    return cx_lane32(v, i1, 0xAAAA);
}
// The same four stages on two vectors at once (each still merged on its own):
// every stage gathers the lower entries of its compare-exchanges into one
// vector and their partners into another (two shuffles), so one min and one
// max do 16 compare-exchanges, against one permute and two masked min/max per
// vector above; the lanes are put back in order by two permutes at the end.
// 18 vector operations per two vectors instead of 24.
static ECGK_MS_INLINE void tail4x2(__m512i& a, __m512i& b, bool rev_out = false) {
    // d = 8: 128-bit chunks 0, 1 of a and b against chunks 2, 3
    __m512i l = _mm512_shuffle_i32x4(a, b, 0x44), h = _mm512_shuffle_i32x4(a, b, 0xEE);
    __m512i lo = _mm512_min_epu32(l, h), hi = _mm512_max_epu32(l, h);
    // d = 4: chunks (0, 2) of each against (1, 3)
    l = _mm512_shuffle_i32x4(lo, hi, 0x88);
    h = _mm512_shuffle_i32x4(lo, hi, 0xDD);
    lo = _mm512_min_epu32(l, h);
    hi = _mm512_max_epu32(l, h);
    // d = 2 and d = 1 inside 128-bit chunks (two-source vshufps)
    __m512 lf = _mm512_shuffle_ps(_mm512_castsi512_ps(lo), _mm512_castsi512_ps(hi), 0x44);
    __m512 hf = _mm512_shuffle_ps(_mm512_castsi512_ps(lo), _mm512_castsi512_ps(hi), 0xEE);
    lo = _mm512_min_epu32(_mm512_castps_si512(lf), _mm512_castps_si512(hf));
    hi = _mm512_max_epu32(_mm512_castps_si512(lf), _mm512_castps_si512(hf));
    lf = _mm512_shuffle_ps(_mm512_castsi512_ps(lo), _mm512_castsi512_ps(hi), 0x88);
    hf = _mm512_shuffle_ps(_mm512_castsi512_ps(lo), _mm512_castsi512_ps(hi), 0xDD);
    lo = _mm512_min_epu32(_mm512_castps_si512(lf), _mm512_castps_si512(hf));
    hi = _mm512_max_epu32(_mm512_castps_si512(lf), _mm512_castps_si512(hf));
    // lo | hi now hold a's and b's entries in a fixed scrambled order
    // rev_out: both vectors come out with their lanes reversed, as the flip
    // stage of the next merge wants its upper operands (see stage_flip32)
    const __m512i ia = rev_out ? _mm512_set_epi32(0, 16, 2, 18, 1, 17, 3, 19, 8, 24, 10, 26, 9, 25, 11, 27)
                               : _mm512_set_epi32(27, 11, 25, 9, 26, 10, 24, 8, 19, 3, 17, 1, 18, 2, 16, 0);
    const __m512i ib = _mm512_add_epi32(ia, _mm512_set1_epi32(4));
    a = _mm512_permutex2var_epi32(lo, ia, hi);
    b = _mm512_permutex2var_epi32(lo, ib, hi);
}
static inline __m512i rev16() { return _mm512_set_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }

// 16 x 16 transpose of 32-bit entries in place, by recursive block swaps: at
// distance D, rows i and i + D (bit D of i clear) exchange their lanes with bit
// D set (row i) and clear (row i + D), shifted by D.
template <int D>
static ECGK_MS_INLINE void transpose16_level(__m512i* r) {
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i idx_m = _mm512_and_si512(_mm512_sub_epi32(lane, _mm512_set1_epi32(D)), _mm512_set1_epi32(15));
    const __m512i idx_p = _mm512_and_si512(_mm512_add_epi32(lane, _mm512_set1_epi32(D)), _mm512_set1_epi32(15));
    const __mmask16 hi = _mm512_test_epi32_mask(lane, _mm512_set1_epi32(D));  // lanes with bit D set
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
        if (i & D) continue;
        const __m512i a = r[i], b = r[i + D];
        r[i] = _mm512_mask_permutexvar_epi32(a, hi, idx_m, b);            // lane c | D <- b[c]
        r[i + D] = _mm512_mask_permutexvar_epi32(b, (__mmask16)~hi, idx_p, a);  // lane c <- a[c | D]
    }
}

// rev_out: the entry-level stages leave every vector's lanes reversed (a
// constant after unrolling)
template <int DV, bool TAIL>
static ECGK_MS_INLINE void merge_rec32(__m512i* v, bool rev_out = false) {
    if constexpr (DV == 0) {
        if constexpr (TAIL) v[0] = tail4(v[0]);
    } else if constexpr (DV == 1 && TAIL) {
        const __m512i lo = _mm512_min_epu32(v[0], v[1]), hi = _mm512_max_epu32(v[0], v[1]);
        v[0] = lo;
        v[1] = hi;
        tail4x2(v[0], v[1], rev_out);
    } else {
#pragma GCC unroll 64
        for (int I = 0; I < DV; ++I) {
            const __m512i lo = _mm512_min_epu32(v[I], v[I + DV]), hi = _mm512_max_epu32(v[I], v[I + DV]);
            v[I] = lo;
            v[I + DV] = hi;
        }
        merge_rec32<DV / 2, TAIL>(v, rev_out);
        merge_rec32<DV / 2, TAIL>(v + DV, rev_out);
    }
}
// REV: entry-level flip (entry i against 16 SV - 1 - i of the group). The
// upper vectors J keep their lanes reversed afterwards: the stages that follow
// compare them only with each other, lane by lane, and a reversed bitonic
// sequence is bitonic, so the entry-level stages still sort each vector
// ascending. PRE: the J vectors come in reversed already (tail4x2's rev_out);
// otherwise they are reversed here.
template <int NV, int SV, bool REV, bool PRE = false>
static ECGK_MS_INLINE void stage_flip32(__m512i* v) {
    const __m512i f = rev16();
#pragma GCC unroll 64
    for (int I = 0; I < NV; ++I) {
        if (I & (SV / 2)) continue;
        const int J = I ^ (SV - 1);
        if constexpr (REV) {
            const __m512i rb = PRE ? v[J] : _mm512_permutexvar_epi32(f, v[J]);
            const __m512i lo = _mm512_min_epu32(v[I], rb), hi = _mm512_max_epu32(v[I], rb);
            v[I] = lo;
            v[J] = hi;
        } else {
            const __m512i lo = _mm512_min_epu32(v[I], v[J]), hi = _mm512_max_epu32(v[I], v[J]);
            v[I] = lo;
            v[J] = hi;
        }
    }
}
// TAIL: the vectors that the next level's flip stage takes as its upper
// operands (bit SV of the index set) come out lane-reversed, and at the last
// level (SV == NV) all of them when DESC (see bsort16)
template <int NV, int SV, bool TAIL, bool DESC = false>
static ECGK_MS_INLINE void halves32(__m512i* v) {
    if constexpr (SV == 2 && TAIL) {
#pragma GCC unroll 32
        for (int b = 0; b < NV; b += 2) tail4x2(v[b], v[b + 1], SV < NV ? (b & SV) != 0 : DESC);
    } else {
#pragma GCC unroll 32
        for (int b = 0; b < NV; b += SV / 2)
            merge_rec32<SV / 4, TAIL>(v + b, TAIL && (SV < NV ? (b & SV) != 0 : DESC));
    }
}
template <int NV, int SV>
static ECGK_MS_INLINE void column_levels32(__m512i* v) {
    if constexpr (SV <= NV) {
        stage_flip32<NV, SV, false>(v);
        halves32<NV, SV, false>(v);
        column_levels32<NV, SV * 2>(v);
    }
}
template <int NV, int SV, bool DESC>
static ECGK_MS_INLINE void merge_levels32(__m512i* w) {
    if constexpr (SV <= NV) {
        stage_flip32<NV, SV, true, (SV > 2)>(w);
        halves32<NV, SV, true, DESC>(w);
        merge_levels32<NV, SV * 2, DESC>(w);
    }
}
// Every lane sorted across 16 vectors with a 60-comparator network of depth
// 10 (the best known for 16 inputs, as listed by Bert Dobbelaere; checked on
// all 2^16 0-1 inputs) instead of the 80 of the bitonic column_levels32<16, 2>.
static ECGK_MS_INLINE void column_sort16(__m512i* v) {
    static constexpr unsigned char net[60][2] = {
        {0, 13}, {1, 12}, {2, 15}, {3, 14}, {4, 8},  {5, 6},   {7, 11},  {9, 10},  {0, 5},   {1, 7},
        {2, 9},  {3, 4},  {6, 13}, {8, 14}, {10, 15}, {11, 12}, {0, 1},   {2, 3},   {4, 5},   {6, 8},
        {7, 9},  {10, 11}, {12, 13}, {14, 15}, {0, 2},  {1, 3},   {4, 10},  {5, 11},  {6, 7},   {8, 9},
        {12, 14}, {13, 15}, {1, 2},  {3, 12}, {4, 6},  {5, 7},   {8, 10},  {9, 11},  {13, 14}, {1, 4},
        {2, 6},  {5, 8},  {7, 10}, {9, 13}, {11, 14}, {2, 4},   {3, 6},   {9, 12},  {11, 13}, {3, 5},
        {6, 8},  {7, 9},  {10, 12}, {3, 4},  {5, 6},  {7, 8},   {9, 10},  {11, 12}, {6, 7},   {8, 9}};
#pragma GCC unroll 60
    for (int c = 0; c < 60; ++c) {
        const int a = net[c][0], b = net[c][1];
        const __m512i lo = _mm512_min_epu32(v[a], v[b]), hi = _mm512_max_epu32(v[a], v[b]);
        v[a] = lo;
        v[b] = hi;
    }
}
// Sort of 16 vectors (256 entries), ascending, or descending when DESC:
// columns sorted across the vectors, one transpose (each column becomes one
// sorted vector), then bitonic merges of 2, 4, 8 and 16 vectors. DESC costs
// nothing: the last level's entry stages reverse the lanes (tail4x2's
// rev_out) and the vectors are taken in reverse order.
template <bool DESC>
static ECGK_MS_INLINE void bsort16(__m512i* v) {
    column_sort16(v);
    transpose16_level<8>(v);
    transpose16_level<4>(v);
    transpose16_level<2>(v);
    transpose16_level<1>(v);
    merge_levels32<16, 2, DESC>(v);
    if constexpr (DESC) {
#pragma GCC unroll 8
        for (int I = 0; I < 8; ++I) std::swap(v[I], v[15 - I]);
    }
}
// Merge two sorted runs of 16 vectors, one ascending and one descending (the
// blocks alternate, see sort_block32), into c[0..32) ascending: a | b is
// bitonic, so the first stage compares a[I] with b[I] lane by lane (no flip,
// no lane reversal).
static ECGK_MS_INLINE void bmerge16(const __m512i* a, const __m512i* b, __m512i* c) {
#pragma GCC unroll 16
    for (int I = 0; I < 16; ++I) {
        c[I] = _mm512_min_epu32(a[I], b[I]);
        c[16 + I] = _mm512_max_epu32(a[I], b[I]);
    }
    merge_rec32<8, true>(c);
    merge_rec32<8, true>(c + 16);
}

// Quantiser of a row: q = (x - lo) * scale, truncated, at most 2^23 - 1.
struct Quant {
    float lo, scale;
};
// The row's range with 0 (the padding) included; false when it is not finite
// (the 64-bit path takes such rows). When `nan` is given the same pass also
// reports whether the row holds a NaN (then the result is false), which saves
// the caller a separate pass over the row (medfilt_walk16.hpp). min/max alone
// cannot tell: vminps returns its second operand when either is NaN, so a NaN
// may or may not survive into the running minimum.
static inline bool make_quant(const float* x, std::ptrdiff_t n, Quant& qz, bool* nan = nullptr) {
    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
    __mmask16 bad = 0;
    std::ptrdiff_t i = 0;
    if (nan) {
        for (; i + 16 <= n; i += 16) {
            const __m512 v = _mm512_loadu_ps(x + i);
            bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
        }
    } else {
        for (; i + 16 <= n; i += 16) {
            const __m512 v = _mm512_loadu_ps(x + i);
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
        }
    }
    float l = _mm512_reduce_min_ps(lo), h = _mm512_reduce_max_ps(hi);
    for (; i < n; ++i) {
        bad |= x[i] != x[i];
        l = std::min(l, x[i]);
        h = std::max(h, x[i]);
    }
    if (nan) {
        *nan = bad != 0;
        if (bad) return false;
    }
    const float r = h - l;
    if (!std::isfinite(r)) return false;
    // all zeros: every q is 0, and every sample is the median
    const double sc = r > 0 ? 8388607.0 / (double)r : 0.0;
    // a range of subnormals would need a scale beyond float: (x - lo) * inf
    // gives NaN at x == lo and breaks the order
    if (!(sc < 1e38)) return false;
    qz.lo = l;
    qz.scale = (float)sc;
    return true;
}

// Whether the row holds a NaN (unordered compare of pairs of vectors: true
// only for NaN, not for +/-inf).
static inline bool row_has_nan(const float* x, std::ptrdiff_t n) {
    __mmask16 bad = 0;
    std::ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32)
        bad |= _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + 16), _CMP_UNORD_Q);
    for (; i < n; ++i) bad |= x[i] != x[i];
    return bad != 0;
}

// Sorted entries of block b of the padded row (256 samples), and its samples
// (by tag offset) in vals[(b & 1) * 256 ..].
static inline void sort_block32(const float* x, std::ptrdiff_t n, std::ptrdiff_t k, std::ptrdiff_t b, const Quant& qz,
                                __m512i* out, float* vals, __m512i* unsorted) {
    constexpr int N = 256;
    const std::ptrdiff_t h = k / 2, q0 = b * N - h;
    float* dst = vals + (b & 1) * N;
    if (q0 >= 0 && q0 + N <= n) {
        std::memcpy(dst, x + q0, N * sizeof(float));
    } else {
        for (std::ptrdiff_t j = 0; j < N; ++j) {
            const std::ptrdiff_t q = q0 + j;
            dst[j] = (q >= 0 && q < n) ? x[q] : 0.0f;
        }
    }
    const __m512 lo = _mm512_set1_ps(qz.lo), sc = _mm512_set1_ps(qz.scale), top = _mm512_set1_ps(8388607.0f);
    const __m512i tag0 = _mm512_add_epi32(_mm512_set1_epi32((int)((b & 1) * N)),
                                          _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
#pragma GCC unroll 16
    for (int I = 0; I < 16; ++I) {
        const __m512 f = _mm512_min_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(dst + 16 * I), lo), sc), top);
        const __m512i q = _mm512_cvttps_epu32(f);
        out[I] = _mm512_or_si512(_mm512_slli_epi32(q, 9), _mm512_add_epi32(tag0, _mm512_set1_epi32(16 * I)));
        unsorted[I] = out[I];
    }
    // odd blocks descending: the pair merge (bmerge16) then needs no flip
    if (b & 1) bsort16<true>(out);
    else bsort16<false>(out);
}

// ---- the walk ------------------------------------------------------------
// One pair's state. The window is not kept as a rank bit mask (two
// read-modify-writes per step, whose store-to-load forwarding chains through
// the words the median walks in): `pos`, rank -> position in A | B, is fixed
// for the pair, and rank r is in the window [j + 1, j + k] after step j when
// pos[r] - (j + 1) < k (unsigned); one vector load and compare give the
// membership of the 16 ranks around the median.
// Ranks outside 0 .. 2N - 1 are padding: PAD sentinel positions (0xFFFF,
// never in a window) on both sides of pos and 64 zero entries below rank 0
// (cx, before c()), so that the grouped walk (medfilt_walk16.hpp) may place
// its 64-rank span partly outside the pair's ranks without a clamp; its
// median_row writes the zeros with the sentinels (ms::median_row reads neither).
template <int N, class Ent>
struct Slot {
    static constexpr int PAD = 64;    // sentinel ranks on both sides of pos
    static constexpr int NV = 2 * N * (int)sizeof(Ent) / 64;  // zmm of entries per pair
    static constexpr int CPV = (int)sizeof(Ent);              // zmm of 64 zero entries below rank 0
    __m512i cx[CPV + NV];             // zeros, then the pair's entries in rank order (c())
    __m512i e[NV];                    // the pair's entries by position in A | B
    uint16_t pos[PAD + 2 * N + PAD];  // rank -> position in A | B (0xFFFF: padding)
    float val[2 * N];                 // rank -> sample
    float out[N];                     // the median at each step
    __m512i* c() { return cx + CPV; }
    const __m512i* c() const { return cx + CPV; }
    const Ent* cr() const { return reinterpret_cast<const Ent*>(cx + CPV); }
    const Ent* er() const { return reinterpret_cast<const Ent*>(e); }
};

// 64-bit entries (key << 32 | tag): the key gives the sample back exactly.
// ua / ub: the unsorted entries of blocks A and B.
template <int NV>
static inline void prepare64(Slot<8 * NV, uint64_t>& s, const __m512i* A, const __m512i* B, const __m512i* ua,
                             const __m512i* ub, int pa) {
    constexpr int N = 8 * NV, P = Slot<N, uint64_t>::PAD;
    bmerge<NV>(A, B, s.c());
    for (int v = 0; v < NV; ++v) {
        s.e[v] = ua[v];
        s.e[NV + v] = ub[v];
    }
    // the tag's block-parity bit says which of the two blocks an entry came
    // from; flipping it when A is the odd block gives the position in A | B
    const __m512i low = _mm512_set1_epi64(2 * N - 1), flip = _mm512_set1_epi64((long long)pa * N);
    for (int v = 0; v < 2 * NV; v += 2) {
        const __m512i e0 = s.c()[v], e1 = s.c()[v + 1];
        const __m256i k0 = _mm512_cvtepi64_epi32(_mm512_srli_epi64(e0, 32)), k1 = _mm512_cvtepi64_epi32(_mm512_srli_epi64(e1, 32));
        _mm512_storeu_ps(s.val + 8 * v, unkeys16(_mm512_inserti64x4(_mm512_castsi256_si512(k0), k1, 1)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(s.pos + P + 8 * v),
                         _mm512_cvtepi64_epi16(_mm512_xor_si512(_mm512_and_si512(e0, low), flip)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(s.pos + P + 8 * v + 8),
                         _mm512_cvtepi64_epi16(_mm512_xor_si512(_mm512_and_si512(e1, low), flip)));
    }
}
// 32-bit entries; vals holds the samples of the even block then the odd one.
static inline void prepare32(Slot<256, uint32_t>& s, const __m512i* A, const __m512i* B, const __m512i* ua,
                             const __m512i* ub, int pa, const float* vals) {
    constexpr int N = 256, P = Slot<N, uint32_t>::PAD;
    bmerge16(A, B, s.c());
    for (int v = 0; v < 16; ++v) {
        s.e[v] = ua[v];
        s.e[16 + v] = ub[v];
    }
    const __m512i low = _mm512_set1_epi32(2 * N - 1), flip = _mm512_set1_epi32(pa * N);
    for (int v = 0; v < 32; ++v) {
        const __m512i tag = _mm512_and_si512(s.c()[v], low);
        _mm512_storeu_ps(s.val + 16 * v, _mm512_i32gather_ps(tag, vals, 4));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.pos + P + 16 * v), _mm512_cvtepi32_epi16(_mm512_xor_si512(tag, flip)));
    }
}

// Window membership of 32 ranks from r0: bit i set when rank r0 + i is in the window.
template <int N, class Ent>
static inline uint32_t in_window(const Slot<N, Ent>& s, std::ptrdiff_t r0, __m512i base, __m512i kk) {
    const __m512i v = _mm512_loadu_si512(s.pos + Slot<N, Ent>::PAD + r0);
    return _mm512_cmplt_epu16_mask(_mm512_sub_epi16(v, base), kk);
}

// The c-th (0-based) window rank, counted from rank 0: the first median, and
// the rare step whose median moves more than 16 ranks away (a long run of ranks
// outside the window, e.g. after a step in the signal).
template <int N, class Ent>
static __attribute__((noinline)) uint32_t select_rank(const Slot<N, Ent>& s, int c, __m512i base, __m512i kk) {
    for (uint32_t r = 0;; r += 32) {
        const uint32_t m = in_window(s, r, base, kk);
        const int pc = __builtin_popcount(m);
        if (c < pc) return r + (uint32_t)__builtin_ctz(_pdep_u32(1u << c, m));
        c -= pc;
    }
}

// One step of the walk: position j leaves, position j + k enters. Before it,
// p is the median's rank: a window rank with exactly h window ranks below it.
// After it, the count of window ranks below p is h + d, d = (entering entry
// below the median's) - (leaving entry below it), so the new median is window
// rank number c = (window ranks in p - 8 .. p - 1) - d counted from p - 8 (the
// median moves by at most one window rank, so it is in p - 8 .. p + 7 unless
// the ranks around it are sparse; then select_rank counts from rank 0). Selecting it with pdep needs no branch on
// the direction, which is data dependent (and mispredicted half the time on
// noise). Entries are unique, so comparing entries compares ranks, and no
// position -> rank table is needed. `base` holds j + 1 in every lane.
template <int N, class Ent>
static ECGK_MS_INLINE uint32_t step(const Slot<N, Ent>& s, uint32_t p, std::ptrdiff_t j, std::ptrdiff_t k, int h,
                                    __m512i base, __m512i kk) {
    // ranks p - 8 .. p + 7 (a 32-byte load crosses a cache line half as often as a
    // 64-byte one; the median rarely moves past 8 ranks)
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.pos + Slot<N, Ent>::PAD + (std::ptrdiff_t)p - 8));
    const uint32_t m = _mm256_cmplt_epu16_mask(_mm256_sub_epi16(v, _mm512_castsi512_si256(base)), _mm512_castsi512_si256(kk));
    const Ent cm = s.cr()[p];
    const int d = (int)(s.er()[j + k] < cm) - (int)(s.er()[j] < cm);
    const int c = __builtin_popcount(m & 0xFFu) - d;
    // c < 0 selects bit 31, which m (16 bits) never has: sel == 0 covers it
    const uint32_t sel = _pdep_u32(1u << (c & 31), m);
    if (__builtin_expect(sel == 0, 0)) return select_rank(s, h, base, kk);
    return p - 8 + (uint32_t)__builtin_ctz(sel);
}

// The walks of GG pairs (slots[0 .. GG)), interleaved: every per-lane address is
// a constant offset from `slots`, so the unrolled lanes need no pointer
// registers of their own. Step j: position j of A | B leaves, j + k enters.
template <int GG, int N, class Ent>
static ECGK_MS_INLINE void walk(Slot<N, Ent>* slots, const uint32_t* p0, std::ptrdiff_t k, int h, __m512i kk) {
    const __m512i one = _mm512_set1_epi16(1);
    __m512i bj = one;
    // a local copy whose address does not escape stays in registers (through
    // p0 every step would store and reload the ranks: +5 cycles of latency)
    uint32_t p[GG];
#pragma GCC unroll 8
    for (int l = 0; l < GG; ++l) p[l] = p0[l];
    for (std::ptrdiff_t j = 0; j < N; ++j) {
#pragma GCC unroll 8
        for (int l = 0; l < GG; ++l) {
            Slot<N, Ent>& sl = slots[l];
            sl.out[j] = sl.val[p[l]];
            p[l] = step(sl, p[l], j, k, h, bj, kk);
        }
        bj = _mm512_add_epi16(bj, one);
    }
}

// walk<gl> for 1 <= gl <= GG
template <int GG, int N, class Ent>
static void walk_up_to(int gl, Slot<N, Ent>* slots, const uint32_t* p, std::ptrdiff_t k, int h, __m512i kk) {
    if constexpr (GG > 1) {
        if (gl < GG) return walk_up_to<GG - 1>(gl, slots, p, k, h, kk);
    }
    walk<GG>(slots, p, k, h, kk);
}

// Q32: 32-bit entries (N = 256 only), else 64-bit ones.

// Writes one group's medians (or x minus them) to y: pair l of the group covers
// outputs (b0 + l) * N .. (b0 + l) * N + N - 1; med_of(l) gives that pair's N medians.
// Shared with the grouped walk of medfilt_walk16.hpp.
template <class MedOf>
static inline void store_group(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t b0, int gl,
                               std::ptrdiff_t N, bool subtract, MedOf med_of) {
    for (int l = 0; l < gl; ++l) {
        const std::ptrdiff_t i0 = (b0 + l) * N;
        const std::ptrdiff_t cnt = std::min<std::ptrdiff_t>(N, n - i0);
        if (cnt <= 0) continue;
        const float* med = med_of(l);
        std::ptrdiff_t i = 0;
        if (subtract) {
            for (; i + 16 <= cnt; i += 16)
                _mm512_storeu_ps(y + i0 + i, _mm512_sub_ps(_mm512_loadu_ps(x + i0 + i), _mm512_loadu_ps(med + i)));
            for (; i < cnt; ++i) y[i0 + i] = x[i0 + i] - med[i];
        } else {
            std::memcpy(y + i0, med, sizeof(float) * (size_t)cnt);
        }
    }
}

// The block-pair driver of both walks (this file's one-step walk and the
// grouped one of medfilt_walk16.hpp): block sorts, pair merges, groups of up to
// G pairs, stores. prep32(slot, A, B, ua, ub, a, tmp) builds a pair's tables
// from 32-bit entries (the walks read them differently); walk(gl, slots, outs,
// p, h, kk) finds the medians of gl pairs from their first ranks p into
// outs[l] (OWN_OUT: buffers of N + 16 floats beside the slots, for a walk that
// writes 16 outputs at a time; else each slot's own `out`).
template <int N, bool Q32, int G, bool OWN_OUT, class Prep32, class Walk>
static void run_pairs(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract, const Quant& qz,
                      Prep32 prep32, Walk walk) {
    constexpr int NV = N / 8;  // zmm per block of 64-bit entries
    static_assert(!Q32 || N == 256, "32-bit entries: blocks of 256");
    const std::ptrdiff_t h = k / 2;
    const std::ptrdiff_t npairs = (n + N - 1) / N;  // each pair gives N outputs
    // One 64-byte aligned scratch area per thread, grown on demand (std::vector
    // and thread_local storage of a dlopen'ed module do not keep the 64-byte
    // alignment of __m512i).
    struct Scratch {
        void* mem = nullptr;
        size_t cap = 0;
        ~Scratch() { std::free(mem); }
    };
    static thread_local Scratch S;
    using Ent = typename std::conditional<Q32, uint32_t, uint64_t>::type;
    using SlotT = Slot<N, Ent>;
    const size_t slot_b = (sizeof(SlotT) + 63) & ~(size_t)63;
    const size_t blk_b = 4 * NV * sizeof(__m512i), tmp_b = ((2 * N + 16) * sizeof(float) + 63) & ~(size_t)63;
    const size_t out_b = OWN_OUT ? ((N + 16) * sizeof(float) + 63) & ~(size_t)63 : 0;
    const size_t need = blk_b + G * slot_b + tmp_b + G * out_b;
    if (S.cap < need) {
        std::free(S.mem);
        S.mem = std::aligned_alloc(64, (need + 63) & ~(size_t)63);
        if (!S.mem) throw std::bad_alloc();
        S.cap = need;
    }
    char* base = static_cast<char*>(S.mem);
    // 32-bit entries use half of each area
    __m512i* blk[2] = {reinterpret_cast<__m512i*>(base), reinterpret_cast<__m512i*>(base) + NV};
    __m512i* uns[2] = {reinterpret_cast<__m512i*>(base) + 2 * NV, reinterpret_cast<__m512i*>(base) + 3 * NV};
    SlotT* slots = reinterpret_cast<SlotT*>(base + blk_b);
    float* tmp = reinterpret_cast<float*>(base + blk_b + G * slot_b);  // block samples (even, odd)
    float* outs[G];
    for (int l = 0; l < G; ++l) {
        outs[l] = OWN_OUT ? reinterpret_cast<float*>(base + blk_b + G * slot_b + tmp_b + l * out_b) : slots[l].out;
        // sentinel ranks outside 0 .. 2N - 1: never in a window (0xFFFF - j - 1 >= k),
        // and zero entries below rank 0 (see Slot)
        std::fill(slots[l].pos, slots[l].pos + SlotT::PAD, (uint16_t)0xFFFF);
        std::fill(slots[l].pos + SlotT::PAD + 2 * N, slots[l].pos + 2 * SlotT::PAD + 2 * N, (uint16_t)0xFFFF);
        for (int v = 0; v < SlotT::CPV; ++v) slots[l].cx[v] = _mm512_setzero_si512();
    }
    const __m512i kk = _mm512_set1_epi16((short)k);
    if constexpr (Q32) sort_block32(x, n, k, 0, qz, blk[0], tmp, uns[0]);
    else sort_block<NV>(x, n, k, 0, blk[0], tmp, uns[0]);
    // groups of up to G pairs walk interleaved; the pairs are spread evenly over
    // the groups (a small last group would walk at the latency of few lanes)
    std::ptrdiff_t groups_left = (npairs + G - 1) / G;
    for (std::ptrdiff_t b0 = 0; b0 < npairs; --groups_left) {
        const int gl = (int)((npairs - b0 + groups_left - 1) / groups_left);
        uint32_t p[G];
        for (int l = 0; l < gl; ++l) {
            const std::ptrdiff_t b = b0 + l;
            const int a = (int)(b & 1);
            if constexpr (Q32) {
                sort_block32(x, n, k, b + 1, qz, blk[a ^ 1], tmp, uns[a ^ 1]);
                prep32(slots[l], blk[a], blk[a ^ 1], uns[a], uns[a ^ 1], a, tmp);
            } else {
                sort_block<NV>(x, n, k, b + 1, blk[a ^ 1], tmp, uns[a ^ 1]);
                prepare64<NV>(slots[l], blk[a], blk[a ^ 1], uns[a], uns[a ^ 1], a);
            }
            p[l] = select_rank(slots[l], (int)h, _mm512_setzero_si512(), kk);
        }
        walk(gl, slots, outs, p, (int)h, kk);
        store_group(x, y, n, b0, gl, N, subtract, [&](int l) -> const float* { return outs[l]; });
        b0 += gl;
    }
}

template <int N, bool Q32>
static void median_row(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract, const Quant& qz) {
    using Ent = typename std::conditional<Q32, uint32_t, uint64_t>::type;
    run_pairs<N, Q32, ECGK_MS_G, false>(
        x, y, n, k, subtract, qz,
        [](Slot<256, uint32_t>& s, const __m512i* A, const __m512i* B, const __m512i* ua, const __m512i* ub, int a,
           const float* vals) { ms::prepare32(s, A, B, ua, ub, a, vals); },
        [k](int gl, Slot<N, Ent>* slots, float* const*, const uint32_t* p, int h, __m512i kk) {
            walk_up_to<ECGK_MS_G>(gl, slots, p, k, h, kk);
        });
}

}  // namespace ms

// Largest window the sorted-block kernel takes (blocks of up to 512 slots).
static inline std::ptrdiff_t median_sorted_max_k() { return 511; }

// exact: 64-bit entries (bit for bit scipy's result); else windows of up to
// 255 samples use 32-bit entries (a sample within about range * 2^-23 of it),
// except on rows whose range is not finite (+/-inf)
static void median_rows_sorted_f32(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s, bool exact) {
    ms::Quant qz{0.0f, 0.0f};
    if (k <= 255 && !exact && ms::make_quant(x, n, qz)) ms::median_row<256, true>(x, y, n, k, s, qz);
    else if (k <= 255) ms::median_row<256, false>(x, y, n, k, s, qz);
    else ms::median_row<512, false>(x, y, n, k, s, qz);
}

#pragma GCC diagnostic pop
