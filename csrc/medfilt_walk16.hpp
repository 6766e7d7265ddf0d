// Median walk of the zmm block-sort running median in groups of 16 outputs
// (float32, AVX-512). Textually included by medfilt.cpp inside the AVX-512
// namespace after medsort_body.hpp, whose block sorts, pair merges, rank
// tables (ms::Slot) and rank selection it reuses; only the walk differs.
//
// The walk of medsort_body.hpp finds each output's median from the previous
// one (a loop-carried chain of about 25 cycles per step, hidden by walking
// five pairs at once). Here the 16 outputs o0 .. o0 + 15 of a group are found
// independently of each other, from one base rank b chosen once per group
// (32 ranks below the previous median, shifted by the median's movement over
// the previous group, see below): with C_o = the number of window ranks
// below b for output o (window = positions o .. o + k - 1 of the pair), the
// median of output o is window rank number t_o = h - C_o counted from b. C_o
// changes by [entering entry < entry b] - [leaving entry < entry b] per
// output, so one vector compare of 16 entering and 16 leaving entries and a
// prefix sum give all 16 t_o; the window membership of ranks b .. b + 63 is
// one byte compare per output (a per-group threshold table built from the
// pair's rank -> position table), and pdep + tzcnt select the t_o-th member.
// The only chain left is one per group (the next base rank from the group's
// last median). A median farther than the 64 ranks (a long run of ranks
// outside the window) is found by counting 32-rank chunks outwards (`far`,
// a call and a mispredicted branch each).
//
// Base rank. The median tends to keep moving the same way over a few groups
// (baseline trends, the slopes of the ECG), so b is centred where it is
// expected to go: pref - 32 + the previous group's movement, clamped to
// +/- ECGK_W16_DRIFT = 24 ranks (pref must stay inside b .. b + 63 for cref).
// Outputs that needed `far`, counted with an instrumented build (k = 201,
// rows of 5000): the ecgfounder preset's filtered records 5.6 % -> 0.94 %,
// random walks 3.9 -> 1.6 %, raw LUDB records 6.5 -> 4.8 %, white noise
// 0.7 -> 1.3 % (a random movement predicts nothing). Tried and dropped: half
// the movement (2.6 % on the preset), the movement only when two groups
// agree in sign, or their mean (1.5-1.7 %), 5/4 of it (0.84 %, no faster).
// Needs k >= 16 (see median_rows_sorted16_f32).
//
// Measured on the shared AVX-512 VM (k = 201 float32, 48 x 5000 rows, same
// process against the previous build): 6.0-6.3 -> 4.4-4.8 ns per sample; the
// walk itself went from about 2.8 to about 2.0 ns. ECGK_W16_G = 2 pairs per
// group (1: 4-6 % slower, 3: no better); ECGK_W16_GS = 16 outputs per group
// (8 or 12: no better; more would miss the 64 ranks more often).
// Second round (192 x 5000 rows of the preset's filter output, in-process A/B
// against the previous build, CPU time): the moving base rank 6-7 % of the
// whole kernel, one opaque output pointer per group 2-3 %, with the sort and
// merge changes of medsort_body.hpp 4.7-4.8 -> 3.7 ns per sample (-22 %).
// Tried and dropped in that round: 32 outputs per group (two prefix-sum
// vectors, thresholds up to 32; 18 % slower, not profiled: the medians move
// farther within 32 outputs, so presumably `far` runs more often), groups of
// 8 (14 % slower: the per-group setup is about 13 % of the kernel), 3 pairs
// per group (no better), membership from the
// sign bits of a byte counter stepped once per output instead of a byte
// compare with i and an xor (5 % slower), scalar cmovs for the clamp of b and
// one blend fewer in the prefix sum (no change), prefetching the next row
// during the walk, into L2 in bursts per pair or a line per group (no
// change), into L1 a line per group (0-3 % in three runs while the VM's
// speed drifted: not kept); the range scan of make_quant still waits on
// memory, about 4 % of the kernel in perf.
// Third round (same input and A/B method, 768 x 5000 rows, CPU time, best of
// 5 per round, 7-9 rounds; ratios are medians of the rounds): the per-output
// code of group16 went from 11-13 to 10 instructions and the per-group setup
// from about 90 to about 65, 3.95-4.03 -> 3.65-3.69 ns per sample (median
// ratio 0.91-0.93 in five separate runs), bit-identical. In steps: the
// byte-compare thresholds as memory operands (kByteRamp) and the position
// lookup from one pointer to rank b together
// -2.5 % (each alone -0.3 to -1 %); membership bytes by vpacksswb + vpermq
// with `enter` from kunpckdq, and the reference count (cref) from the same
// byte compare at i = -1 instead of two word compares, -2 %; no clamp of the
// base rank (ms::Slot pads pos with 64 sentinel ranks and the entries with 64
// zeros below rank 0) -1.3 %; the entering / leaving compares written with
// the load as memory operand (below16) -1 %. Tried and dropped in that
// round: the pairs' samples and unsorted entries not copied into their slots
// (one padded copy of the row and a row-wide array of unsorted entries,
// pointers per pair: +1 % with the block sort and the pair setup kept out of
// line, +11 % when the compiler inlined them into the row loop; samples still
// copied from the padded row into the slot: +-0, so the samples' locality
// cost what the copies saved), sort_block32 reading blocks inside the row in
// place instead of through the staging buffer (-0.3 %, noise), the group's
// last output computed first (it alone feeds the next group's base rank:
// +2.6 %), 3 pairs per group again (+4 %), the pos table's and + xor as one
// vpternlogd with the upper half of t re-read from tt (no change), and one
// out-of-line call finishing the group at its first far output instead of
// one far() call per output (-0.25 %, noise; counted with an instrumented
// build: 0.96 % of the outputs go far, 78 % of those after another far
// output of the same group, so a cheaper path would re-centre the span
// there). A perf profile afterwards: the walk (with the range scan and the
// stores) 55 % of the kernel, the block sort 29 %, the pair merge and tables
// 13.5 %, far() 1.4 %.

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#ifndef ECGK_W16_G
#define ECGK_W16_G 2
#endif
#ifndef ECGK_W16_DRIFT
#define ECGK_W16_DRIFT 24
#endif
// pref - b = 32 - shift must stay within 0 .. 64 (bzhi in group16)
static_assert(ECGK_W16_DRIFT >= 0 && ECGK_W16_DRIFT <= 32, "base rank shift out of range");
#ifndef ECGK_W16_GS
#define ECGK_W16_GS 16
#endif

namespace mw {

using ms::Slot;

// bit i set when entry ents[i] < cb, i = 0 .. 15 (written as cb > ents so
// that the load becomes the compare's memory operand: the other order kept
// one of the two loads per group in a stack slot, stored and reloaded)
static ECGK_MS_INLINE uint32_t below16(const uint32_t* ents, uint32_t cb) {
    return _mm512_cmpgt_epu32_mask(_mm512_set1_epi32((int)cb), _mm512_loadu_epi32(ents));
}
static ECGK_MS_INLINE uint32_t below16(const uint64_t* ents, uint64_t cb) {
    const __m512i c = _mm512_set1_epi64((long long)cb);
    const uint32_t lo = _mm512_cmplt_epu64_mask(_mm512_loadu_si512(ents), c);
    const uint32_t hi = _mm512_cmplt_epu64_mask(_mm512_loadu_si512(ents + 8), c);
    return lo | hi << 8;
}

// The median of output o when it is not within ranks b .. b + 63: t < 0
// means it is the (-t)-th window rank below b (counted downwards), t >=
// popcount(m) the (t - popcount(m))-th from b + 64. Rare; the rank table's
// sentinels stop the scans at both ends (the median exists within 0 .. 2N - 1).
template <int N, class Ent>
static __attribute__((noinline)) uint32_t far(const Slot<N, Ent>& s, int b, int t, uint64_t m, int o0, int i,
                                              __m512i kk) {
    const __m512i bo = _mm512_set1_epi16((short)(o0 + i));
    if (t < 0) {
        int need = -t;
        for (int r0 = b - 32;; r0 -= 32) {
            const uint32_t mm = ms::in_window(s, r0, bo, kk);
            const int pc = __builtin_popcount(mm);
            if (need <= pc) return (uint32_t)(r0 + __builtin_ctz(_pdep_u32(1u << (pc - need), mm)));
            need -= pc;
        }
    }
    t -= __builtin_popcountll(m);
    for (int r0 = b + 64;; r0 += 32) {
        const uint32_t mm = ms::in_window(s, r0, bo, kk);
        const int pc = __builtin_popcount(mm);
        if (t < pc) return (uint32_t)(r0 + __builtin_ctz(_pdep_u32(1u << t, mm)));
        t -= pc;
    }
}

// kByteRamp[i]: 64 bytes of i, the thresholds of group16's byte compares
static_assert(ECGK_W16_GS <= 16, "group16 handles at most 16 outputs (one vector of prefix sums)");
#define ECGK_W16_R8(i) i, i, i, i, i, i, i, i
#define ECGK_W16_R64(i) {ECGK_W16_R8(i), ECGK_W16_R8(i), ECGK_W16_R8(i), ECGK_W16_R8(i), \
                         ECGK_W16_R8(i), ECGK_W16_R8(i), ECGK_W16_R8(i), ECGK_W16_R8(i)}
alignas(64) static const int8_t kByteRamp[16][64] = {
    ECGK_W16_R64(0),  ECGK_W16_R64(1),  ECGK_W16_R64(2),  ECGK_W16_R64(3),  ECGK_W16_R64(4),  ECGK_W16_R64(5),
    ECGK_W16_R64(6),  ECGK_W16_R64(7),  ECGK_W16_R64(8),  ECGK_W16_R64(9),  ECGK_W16_R64(10), ECGK_W16_R64(11),
    ECGK_W16_R64(12), ECGK_W16_R64(13), ECGK_W16_R64(14), ECGK_W16_R64(15)};
#undef ECGK_W16_R64
#undef ECGK_W16_R8

// Outputs o0 .. o0 + 15 of one pair (o0 >= 1) into out[o0 ..]; pref is the
// median rank of output o0 - 1. Returns the median rank of output o0 + 15.
template <int N, class Ent>
static ECGK_MS_INLINE uint32_t group16(const Slot<N, Ent>& s, float* out, uint32_t pref, int o0, int k, int h,
                                       __m512i kk, int drift) {
    constexpr int P = Slot<N, Ent>::PAD;
    // centred on where the median is expected to go: the previous group's
    // movement, clamped so that pref stays inside b .. b + 63 (cref below).
    // b itself is not clamped to 0 .. 2N - 64: it stays within -32 - DRIFT ..
    // 2N - 33 + DRIFT, where the zero entries below rank 0 (cb = 0: no entry
    // below it) and the sentinel ranks of pos (never in a window) stand in
    // for the missing ranks.
    static_assert(Slot<N, Ent>::PAD >= 32 + ECGK_W16_DRIFT &&
                      Slot<N, Ent>::CPV * 64 / (int)sizeof(Ent) >= 32 + ECGK_W16_DRIFT,
                  "rank padding too small for the base rank's range");
    const int b = (int)pref - 32 + std::max(-ECGK_W16_DRIFT, std::min(ECGK_W16_DRIFT, drift));
    // positions of ranks b .. b + 63, relative to o0 - 1
    const __m512i base = _mm512_set1_epi16((short)(o0 - 1));
    const __m512i lo = _mm512_sub_epi16(_mm512_loadu_si512(s.pos + P + b), base);
    const __m512i hi = _mm512_sub_epi16(_mm512_loadu_si512(s.pos + P + b + 32), base);
    // Window membership of ranks b .. b + 63 for outputs o0 - 1 .. o0 + 15 as
    // one byte per rank: rank r is in the window of output o0 + i when
    // lo - k <= i < lo. A rank with lo < k leaves (in the window while
    // i < lo), one with lo >= k enters (in it once i >= lo - k), so with
    // v = lo or lo - k, clamped to -1 .. 16, and `enter` marking the entering
    // ranks, membership is (i < v) xor enter: one byte compare per output,
    // i = -1 included (output o0 - 1, for cref). vpacksswb saturates the two
    // halves to bytes (interleaved by 64 bits, which vpermq undoes) before the
    // clamp. (The sentinel ranks have lo < 0: never in a window.)
    const __m512i k16 = _mm512_set1_epi16((short)k);
    const __mmask32 e0 = _mm512_cmpge_epi16_mask(lo, k16), e1 = _mm512_cmpge_epi16_mask(hi, k16);
    const __m512i v0 = _mm512_mask_sub_epi16(lo, e0, lo, k16), v1 = _mm512_mask_sub_epi16(hi, e1, hi, k16);
    const __m512i ord = _mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0), m1 = _mm512_set1_epi8(-1);
    const __m512i vb = _mm512_min_epi8(_mm512_max_epi8(_mm512_permutexvar_epi64(ord, _mm512_packs_epi16(v0, v1)), m1),
                                       _mm512_set1_epi8(16));
    const uint64_t enter = _cvtmask64_u64(_mm512_kunpackd((__mmask64)e1, (__mmask64)e0));
    // window ranks below b at output o0 - 1: h minus those in b .. pref - 1
    const uint64_t mref = _mm512_cmpgt_epi8_mask(vb, m1) ^ enter;
    const int cref = h - (int)__builtin_popcountll(_bzhi_u64(mref, (uint32_t)((int)pref - b)));
    // t_o = h - C_o = (h - cref) - prefix sum of (entering below b) - (leaving below b)
    const Ent cb = s.cr()[b];
    const __mmask16 in = (__mmask16)below16(s.er() + o0 + k - 1, cb), outm = (__mmask16)below16(s.er() + o0 - 1, cb);
    const __m512i one = _mm512_set1_epi32(1), z = _mm512_setzero_si512();
    __m512i d = _mm512_sub_epi32(_mm512_maskz_mov_epi32(in, one), _mm512_maskz_mov_epi32(outm, one));
    d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, z, 15));
    d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, z, 14));
    d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, z, 12));
    d = _mm512_add_epi32(d, _mm512_alignr_epi32(d, z, 8));
    // the selector bit of each output, 1 << t_o, or 0 when t_o is outside 0 .. 63
    // (vpsllvq gives 0 for such counts, negative ones included)
    const __m512i t = _mm512_sub_epi32(_mm512_set1_epi32(h - cref), d);
    alignas(64) int32_t tt[16];  // for the rare path
    _mm512_store_si512(tt, t);
    alignas(64) uint64_t bit[16];
    const __m512i one64 = _mm512_set1_epi64(1);
    _mm512_store_si512(bit, _mm512_sllv_epi64(one64, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(t))));
    _mm512_store_si512(bit + 8, _mm512_sllv_epi64(one64, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(t, 1))));
    // make the compiler read bit[i] from memory (a pdep memory operand): left to
    // itself it kept bit[] in vector registers and spent one or two extracts per
    // output (this, and fewer arguments for far(): about 5 % of the kernel)
    __asm__ volatile("" : : "m"(bit) : "memory");
    // the thresholds i of the byte compares as memory operands: built as
    // constants, the compiler kept eight in registers and rebuilt the others
    // with mov + vpbroadcastb for every output (the pointer is hidden from it,
    // or it would fold the table back into such constants)
    const int8_t* thr = &kByteRamp[0][0];
    __asm__("" : "+r"(thr));
    // ranks b .. from one pointer: the position lookup needs no add per output
    const uint16_t* pb = s.pos + P + b;
    __asm__("" : "+r"(pb));
    std::size_t r = pref;
    // one opaque pointer for the 16 stores: left to itself the compiler turned
    // out + o0 + i into 16 induction variables, kept in xmm registers
    float* ob = out + o0;
    __asm__("" : "+r"(ob));
#pragma GCC unroll 16
    for (int i = 0; i < ECGK_W16_GS; ++i) {
        const uint64_t m = _mm512_cmpgt_epi8_mask(vb, _mm512_load_si512(thr + 64 * i)) ^ enter;
        const uint64_t sel = _pdep_u64(bit[i], m);
        if (__builtin_expect(sel == 0, 0)) {
            r = far(s, b, tt[i], m, o0, i, kk);
            if constexpr (sizeof(Ent) == 4) ob[i] = s.val[s.pos[P + r]];  // val by position (prepare32)
            else ob[i] = s.val[r];                                          // val by rank (ms::prepare64)
        } else {
            const std::size_t c = (std::size_t)__builtin_ctzll(sel);
            r = (std::size_t)b + c;
            if constexpr (sizeof(Ent) == 4) ob[i] = s.val[pb[c]];
            else ob[i] = s.val[r];
        }
    }
    return (uint32_t)r;
}

// ms::prepare32 without its gather: val holds the pair's samples by position
// in A | B (two copies of 1 KB) instead of by rank, and the walk reads
// val[pos[r]]. The 32 gathers of 16 samples per pair cost more than the extra
// load per output.
static inline void prepare32(Slot<256, uint32_t>& s, const __m512i* A, const __m512i* B, const __m512i* ua,
                             const __m512i* ub, int pa, const float* vals) {
    constexpr int N = 256, P = Slot<N, uint32_t>::PAD;
    ms::bmerge16(A, B, s.c());
    for (int v = 0; v < 16; ++v) {
        s.e[v] = ua[v];
        s.e[16 + v] = ub[v];
    }
    // tags of two vectors packed to 16 bits at once (vpackusdw works within
    // 128-bit lanes, vpermq puts the 64-bit groups back in order): half the
    // shuffles of one vpmovdw per vector
    const __m512i low = _mm512_set1_epi32(2 * N - 1), flip = _mm512_set1_epi16((short)(pa * N));
    const __m512i ord = _mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0);
    for (int v = 0; v < 32; v += 2) {
        const __m512i t = _mm512_packus_epi32(_mm512_and_si512(s.c()[v], low), _mm512_and_si512(s.c()[v + 1], low));
        _mm512_storeu_si512(s.pos + P + 16 * v, _mm512_xor_si512(_mm512_permutexvar_epi64(ord, t), flip));
    }
    std::memcpy(s.val, vals + pa * N, N * sizeof(float));
    std::memcpy(s.val + N, vals + (pa ^ 1) * N, N * sizeof(float));
}

// The walks of GG pairs, group by group (the pairs' chains are independent).
// out: GG buffers of N + 16 floats.
template <int GG, int N, class Ent>
static void walk(Slot<N, Ent>* slots, float* const* out, const uint32_t* p0, int k, int h, __m512i kk) {
    uint32_t p[GG];
    int dr[GG];  // each pair's median movement over its previous group (ranks)
#pragma GCC unroll 8
    for (int l = 0; l < GG; ++l) {
        p[l] = p0[l];
        dr[l] = 0;
        if constexpr (sizeof(Ent) == 4) out[l][0] = slots[l].val[slots[l].pos[Slot<N, Ent>::PAD + p[l]]];
        else out[l][0] = slots[l].val[p[l]];
    }
    for (int o0 = 1; o0 < N; o0 += ECGK_W16_GS) {
#pragma GCC unroll 8
        for (int l = 0; l < GG; ++l) {
            const uint32_t np = group16(slots[l], out[l], p[l], o0, k, h, kk, dr[l]);
            dr[l] = (int)np - (int)p[l];
            p[l] = np;
        }
    }
}
// noinline: inlined into ms::run_pairs it cost 3 % (register pressure in the
// driver's loop), measured in one process against the build before the shared driver
template <int GG, int N, class Ent>
static __attribute__((noinline)) void walk_up_to(int gl, Slot<N, Ent>* slots, float* const* out, const uint32_t* p, int k, int h, __m512i kk) {
    if constexpr (GG > 1) {
        if (gl < GG) return walk_up_to<GG - 1>(gl, slots, out, p, k, h, kk);
    }
    walk<GG>(slots, out, p, k, h, kk);
}

// ms::median_row's driver (medsort_body.hpp, ms::run_pairs) with this file's
// tables and grouped walk.
template <int N, bool Q32>
static void median_row(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool subtract, const ms::Quant& qz) {
    using Ent = typename std::conditional<Q32, uint32_t, uint64_t>::type;
    ms::run_pairs<N, Q32, ECGK_W16_G, true>(
        x, y, n, k, subtract, qz,
        [](Slot<256, uint32_t>& s, const __m512i* A, const __m512i* B, const __m512i* ua, const __m512i* ub, int a,
           const float* vals) { mw::prepare32(s, A, B, ua, ub, a, vals); },
        [k](int gl, Slot<N, Ent>* slots, float* const* outs, const uint32_t* p, int h, __m512i kk) {
            walk_up_to<ECGK_W16_G>(gl, slots, outs, p, (int)k, h, kk);
        });
}

}  // namespace mw

// as median_rows_sorted_f32, with the grouped walk. Windows shorter than a
// group (k < 16, only when tests force the kernel) keep the one-step walk: a
// rank could then enter and leave within one group, which the per-group
// membership bound (group16) cannot express.
// nan_checked: the caller has already found no NaN in the row. Otherwise the
// quantised path's range scan looks for NaN in the same pass (a row with NaN
// becomes NaN throughout, as in medfilt.cpp's median_row), and the other paths
// do a separate scan first.
static void median_rows_sorted16_f32(const float* x, float* y, std::ptrdiff_t n, std::ptrdiff_t k, bool s, bool exact,
                                     bool nan_checked = true) {
    if (!nan_checked && !(k >= 16 && k <= 255 && !exact)) {
        if (ms::row_has_nan(x, n)) {
            for (std::ptrdiff_t j = 0; j < n; ++j) y[j] = std::numeric_limits<float>::quiet_NaN();
            return;
        }
        nan_checked = true;
    }
    if (k < 16) return median_rows_sorted_f32(x, y, n, k, s, exact);
    ms::Quant qz{0.0f, 0.0f};
    bool nan = false;
    const bool quant = k <= 255 && !exact && ms::make_quant(x, n, qz, nan_checked ? nullptr : &nan);
    if (nan) {
        for (std::ptrdiff_t j = 0; j < n; ++j) y[j] = std::numeric_limits<float>::quiet_NaN();
        return;
    }
    if (quant) mw::median_row<256, true>(x, y, n, k, s, qz);
    else if (k <= 255) mw::median_row<256, false>(x, y, n, k, s, qz);
    else mw::median_row<512, false>(x, y, n, k, s, qz);
}

#pragma GCC diagnostic pop
