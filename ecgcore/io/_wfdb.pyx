# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Byte-level WFDB kernels: signal-file decoding and MIT annotation parsing.

The Python layer (:mod:`ecgcore.io.wfdb`, :mod:`ecgcore.io.annotations`)
checks that every buffer is long enough before calling in here; these loops
trust their arguments and never allocate per sample.

Signal formats follow the WFDB "signal(5)" manual page: 8 (first
differences), 16, 61 (big-endian 16), 80 and 160 (offset binary), 212
(two 12-bit samples in three bytes), 310 and 311 (three 10-bit samples in
four bytes), 24 and 32 (little-endian two's complement).
"""

import numpy as np
cimport numpy as cnp
from libc.math cimport NAN
from libc.stdint cimport int64_t, int32_t, uint8_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcmp, memcpy

cnp.import_array()

cdef extern from *:
    """
    /* Scale one signal of frame-interleaved samples into a contiguous float row.
     * The frame stride is a compile-time constant for the common frame sizes
     * (1 to 16 signals per file): with a runtime stride the compiler emits a
     * scalar loop, with a constant one it vectorises the strided gather.
     * exact: (v - b) / g in float32 (v, b, g exact in float32), one correctly
     * rounded division, i.e. the float32 rounding of the exact physical value;
     * otherwise (v - b) * s in float64, rounded to float32. The hot loop has no
     * branch: invalid codes are only counted. */
    #define ECG_SCALE_BODY(TS)                                                      \\
        if (exact) {                                                                \\
            for (t = 0; t < m; t++) {                                               \\
                v = (int)x[t * (TS)];                                              \\
                o[t] = ((float)v - bf) / gf;                                        \\
                bad |= v == inv32;                                                    \\
            }                                                                       \\
        } else {                                                                    \\
            for (t = 0; t < m; t++) {                                               \\
                v = (int)x[t * (TS)];                                              \\
                o[t] = (float)(((double)v - b) * s);                                \\
                bad |= v == inv32;                                                    \\
            }                                                                       \\
        }
    #define ECG_SCALE_FN(NAME, SRC)                                                 \\
    static Py_ssize_t NAME(const SRC* x, Py_ssize_t m, Py_ssize_t tspf, double b,   \\
                           double s, float bf, float gf, int exact, long inv,       \\
                           float* o) {                                              \\
        Py_ssize_t t;                                                               \\
        int v, bad = 0, inv32 = (int)inv;                                           \\
        switch (tspf) {                                                             \\
        case 1: ECG_SCALE_BODY(1) break;                                            \\
        case 2: ECG_SCALE_BODY(2) break;                                            \\
        case 3: ECG_SCALE_BODY(3) break;                                            \\
        case 4: ECG_SCALE_BODY(4) break;                                            \\
        case 6: ECG_SCALE_BODY(6) break;                                            \\
        case 8: ECG_SCALE_BODY(8) break;                                            \\
        case 12: ECG_SCALE_BODY(12) break;                                          \\
        case 15: ECG_SCALE_BODY(15) break;                                          \\
        case 16: ECG_SCALE_BODY(16) break;                                          \\
        default: ECG_SCALE_BODY(tspf) break;                                        \\
        }                                                                           \\
        return bad;                                                                 \\
    }
    /* run-time dispatch (ifunc) to AVX2 / AVX-512 clones: the portable SSE2 build
       divides 4 floats at a time; the results are the same IEEE divisions */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    __attribute__((target_clones("avx512f", "avx2", "default")))
    #endif
    ECG_SCALE_FN(ecg_scale_i16, short)
    /* gcc's vectorised gather of strided int32 runs several times slower than
       its scalar loop (measured: 3.5 vs 1.3 ns per sample at stride 12) */
    #if defined(__GNUC__) && !defined(__clang__)
    __attribute__((optimize("no-tree-vectorize")))
    #endif
    ECG_SCALE_FN(ecg_scale_i32, int32_t)
    """
    Py_ssize_t ecg_scale_i16(const short* x, Py_ssize_t m, Py_ssize_t tspf, double b, double s,
                             float bf, float gf, int exact, long inv, float* o) noexcept nogil
    Py_ssize_t ecg_scale_i32(const int32_t* x, Py_ssize_t m, Py_ssize_t tspf, double b, double s,
                             float bf, float gf, int exact, long inv, float* o) noexcept nogil


cdef extern from *:
    """
    /* 12-lead format 16, the biobank case, with AVX2: the generic loop above reads
     * each signal's samples with a stride of 12 (element by element: gcc cannot
     * vectorise that gather), so here each frame's 12 samples are converted and
     * scaled in two registers (leads 0-7 and 8-11, the per-lead baselines and
     * gains in the same lanes for every frame), and 8 frames at a time are
     * transposed in registers (one 8x8 and two 4x4 float transposes) into the
     * 12 rows. Per element the arithmetic is the exact route's, (float)v - b
     * then one IEEE division by g, so the floats are the same as the generic
     * loop's (measured 12 x 5000: 23 -> 19 us with the input in cache, 36 -> 27
     * us from memory). Returns 1 when the samples held the invalid code (the
     * caller then writes the NaNs), 0 otherwise; -1 when this build or CPU has
     * no such kernel (x86-64 with gcc or clang, AVX2 checked at run time). */
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    #define ECG_HAVE_AVX2_12 1
    __attribute__((target("avx2")))
    static int ecg_decode16x12(const short* x, Py_ssize_t m, const double* bl,
                               const double* gain, float* const* rows, long inv) {
        float pb[12], pg[12];
        __m256 B0, G0;
        __m128 B1, G1;
        __m128i invv = _mm_set1_epi16((short)inv), badv = _mm_setzero_si128();
        Py_ssize_t t, k, i;
        int bad = 0;
        for (i = 0; i < 12; i++) {
            pb[i] = (float)bl[i];
            pg[i] = (float)gain[i];
        }
        B0 = _mm256_loadu_ps(pb); G0 = _mm256_loadu_ps(pg);
        B1 = _mm_loadu_ps(pb + 8); G1 = _mm_loadu_ps(pg + 8);
        for (t = 0; t + 8 <= m; t += 8) {
            const short* p = x + t * 12;
            __m256 r[8], t0, t1, t2, t3, t4, t5, t6, t7;
            __m128 h[8];
            /* frame i: leads 0-7 into r[i] and leads 8-11 into h[i], scaled */
            for (i = 0; i < 8; i++) {
                __m128i s = _mm_loadu_si128((const __m128i*)(p + 12 * i));
                __m128i u = _mm_loadl_epi64((const __m128i*)(p + 12 * i + 8));
                __m256 a = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(s)), B0);
                __m128 c = _mm_sub_ps(_mm_cvtepi32_ps(_mm_cvtepi16_epi32(u)), B1);
                badv = _mm_or_si128(badv, _mm_or_si128(_mm_cmpeq_epi16(s, invv),
                                                       _mm_cmpeq_epi16(u, invv)));
                /* IEEE division lane by lane: the scalar route's exact quotient */
                r[i] = _mm256_div_ps(a, G0);
                h[i] = _mm_div_ps(c, G1);
            }
            /* leads 0-7: an 8x8 transpose, frames -> rows */
            t0 = _mm256_unpacklo_ps(r[0], r[1]); t1 = _mm256_unpackhi_ps(r[0], r[1]);
            t2 = _mm256_unpacklo_ps(r[2], r[3]); t3 = _mm256_unpackhi_ps(r[2], r[3]);
            t4 = _mm256_unpacklo_ps(r[4], r[5]); t5 = _mm256_unpackhi_ps(r[4], r[5]);
            t6 = _mm256_unpacklo_ps(r[6], r[7]); t7 = _mm256_unpackhi_ps(r[6], r[7]);
            r[0] = _mm256_shuffle_ps(t0, t2, 0x44); r[1] = _mm256_shuffle_ps(t0, t2, 0xEE);
            r[2] = _mm256_shuffle_ps(t1, t3, 0x44); r[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
            r[4] = _mm256_shuffle_ps(t4, t6, 0x44); r[5] = _mm256_shuffle_ps(t4, t6, 0xEE);
            r[6] = _mm256_shuffle_ps(t5, t7, 0x44); r[7] = _mm256_shuffle_ps(t5, t7, 0xEE);
            _mm256_storeu_ps(rows[0] + t, _mm256_permute2f128_ps(r[0], r[4], 0x20));
            _mm256_storeu_ps(rows[1] + t, _mm256_permute2f128_ps(r[1], r[5], 0x20));
            _mm256_storeu_ps(rows[2] + t, _mm256_permute2f128_ps(r[2], r[6], 0x20));
            _mm256_storeu_ps(rows[3] + t, _mm256_permute2f128_ps(r[3], r[7], 0x20));
            _mm256_storeu_ps(rows[4] + t, _mm256_permute2f128_ps(r[0], r[4], 0x31));
            _mm256_storeu_ps(rows[5] + t, _mm256_permute2f128_ps(r[1], r[5], 0x31));
            _mm256_storeu_ps(rows[6] + t, _mm256_permute2f128_ps(r[2], r[6], 0x31));
            _mm256_storeu_ps(rows[7] + t, _mm256_permute2f128_ps(r[3], r[7], 0x31));
            /* leads 8-11: two 4x4 transposes (frames 0-3, then 4-7) */
            _MM_TRANSPOSE4_PS(h[0], h[1], h[2], h[3]);
            _MM_TRANSPOSE4_PS(h[4], h[5], h[6], h[7]);
            for (k = 0; k < 4; k++) {
                _mm_storeu_ps(rows[8 + k] + t, h[k]);
                _mm_storeu_ps(rows[8 + k] + t + 4, h[4 + k]);
            }
        }
        for (; t < m; t++) {  /* the last frames, one by one, same arithmetic */
            for (k = 0; k < 12; k++) {
                int v = x[t * 12 + k];
                bad |= v == (int)inv;
                rows[k][t] = ((float)v - pb[k]) / pg[k];
            }
        }
        return bad | !_mm_testz_si128(badv, badv);
    }
    static int ecg_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2");
    }
    #else
    #define ECG_HAVE_AVX2_12 0
    static int ecg_decode16x12(const short* x, Py_ssize_t m, const double* bl,
                               const double* gain, float* const* rows, long inv) { return -1; }
    static int ecg_has_avx2(void) { return 0; }
    #endif
    """
    int ecg_decode16x12(const short* x, Py_ssize_t m, const double* bl, const double* gain,
                        float* const* rows, long inv) noexcept nogil
    int ecg_has_avx2() noexcept nogil


cdef bint _AVX2 = ecg_has_avx2() != 0


def has_avx2_kernel():
    """Whether the 12-lead format-16 decoding kernel (AVX2) runs on this CPU and build."""
    return bool(_AVX2)


cdef inline long _sample(const uint8_t* b, int fmt, Py_ssize_t k) noexcept nogil:
    """Digital value of flat sample ``k`` (frame-interleaved order) of a buffer."""
    cdef Py_ssize_t q, o
    cdef long v
    if fmt == 16:
        return <long>(<short>(b[2 * k] | (b[2 * k + 1] << 8)))
    elif fmt == 212:
        q = k >> 1
        o = 3 * q
        if k & 1:
            v = b[o + 2] | ((b[o + 1] & 0xF0) << 4)
        else:
            v = b[o] | ((b[o + 1] & 0x0F) << 8)
        return v - 4096 if v > 2047 else v
    elif fmt == 32:
        return <long>(<int32_t>(<unsigned int>b[4 * k] | (<unsigned int>b[4 * k + 1] << 8)
                                | (<unsigned int>b[4 * k + 2] << 16)
                                | (<unsigned int>b[4 * k + 3] << 24)))
    elif fmt == 24:
        v = b[3 * k] | (b[3 * k + 1] << 8) | (b[3 * k + 2] << 16)
        return v - 16777216 if v > 8388607 else v
    elif fmt == 61:
        return <long>(<short>((b[2 * k] << 8) | b[2 * k + 1]))
    elif fmt == 160:
        return <long>(b[2 * k] | (b[2 * k + 1] << 8)) - 32768
    elif fmt == 80:
        return <long>b[k] - 128
    elif fmt == 310:
        q = k // 3
        o = 4 * q
        k = k - 3 * q
        if k == 0:
            v = (b[o] >> 1) | ((b[o + 1] & 0x07) << 7)
        elif k == 1:
            v = (b[o + 2] >> 1) | ((b[o + 3] & 0x07) << 7)
        else:
            v = ((b[o + 1] >> 3) & 0x1F) | (((b[o + 3] >> 3) & 0x1F) << 5)
        return v - 1024 if v > 511 else v
    elif fmt == 311:
        q = k // 3
        o = 4 * q
        k = k - 3 * q
        if k == 0:
            v = b[o] | ((b[o + 1] & 0x03) << 8)
        elif k == 1:
            v = (b[o + 1] >> 2) | ((b[o + 2] & 0x0F) << 6)
        else:
            v = (b[o + 2] >> 4) | ((b[o + 3] & 0x3F) << 4)
        return v - 1024 if v > 511 else v
    elif fmt == 8:
        return <long>(<signed char>b[k])
    return 0


def first_differences(const uint8_t[::1] buf, Py_ssize_t n_frames, int[::1] spf, long[::1] init):
    """Integrate format-8 first differences into int32 absolute samples.

    Each signal's running sum starts at its header initial value, exactly as
    the WFDB library does when a record is read from its first sample.

    Returns
    -------
    ndarray of int32, shape (n_frames * sum(spf),)
        Flat frame-interleaved samples, decodable as format 32.
    """
    cdef Py_ssize_t n_sig = spf.shape[0], tspf = 0, t, j, m, k = 0
    for j in range(n_sig):
        tspf += spf[j]
    out_arr = np.empty(n_frames * tspf, dtype=np.int32)
    cdef int32_t[::1] out = out_arr
    acc_arr = np.array(init, dtype=np.int64)
    cdef int64_t[::1] acc = acc_arr
    with nogil:
        for t in range(n_frames):
            for j in range(n_sig):
                for m in range(spf[j]):
                    acc[j] += <signed char>buf[k]
                    out[k] = <int32_t>acc[j]
                    k += 1
    return out_arr


ctypedef fused src_t:
    short
    int32_t


cdef void _scatter(const src_t* x, Py_ssize_t n_frames, Py_ssize_t tspf, int c, int spf, int s,
                   double bl, double sc, long invalid, bint check_invalid, float* o,
                   Py_ssize_t n_out) noexcept nogil:
    """Scale one signal out of flat frame-interleaved digital samples into a float row."""
    cdef Py_ssize_t t, src, m, k
    cdef long d
    cdef int64_t acc
    cdef Py_ssize_t n_direct = n_frames - s
    if n_direct > n_out:
        n_direct = n_out
    if n_direct < 0:
        n_direct = 0
    if spf == 1:
        k = <Py_ssize_t>s * tspf + c
        if check_invalid:
            for t in range(n_direct):
                d = x[k + t * tspf]
                o[t] = NAN if d == invalid else <float>((d - bl) * sc)
        else:
            for t in range(n_direct):
                o[t] = <float>((x[k + t * tspf] - bl) * sc)
    else:
        for t in range(n_direct):
            acc = 0
            k = (t + s) * tspf + c
            for m in range(spf):
                acc += x[k + m]
            d = <long>(<double>acc / spf)
            if check_invalid and d == invalid:
                o[t] = NAN
            else:
                o[t] = <float>((d - bl) * sc)
    # a skewed signal runs past the end of the file: invalid samples
    for t in range(n_direct, n_out):
        o[t] = NAN


ctypedef fused dst_t:
    short
    int32_t


cdef void _unpack_ptr(const uint8_t* b, int fmt, Py_ssize_t n, dst_t* o) noexcept nogil:
    """Decode ``n`` flat samples starting at ``b`` (sample 0 of a packing group).

    ``dst_t`` is int16 for formats whose samples fit in 16 bits, else int32.
    """
    cdef Py_ssize_t k, q, npair
    cdef int v
    if fmt == 212:
        npair = n // 2
        for q in range(npair):
            v = b[3 * q] | ((b[3 * q + 1] & 0x0F) << 8)
            o[2 * q] = v - 4096 if v > 2047 else v
            v = b[3 * q + 2] | ((b[3 * q + 1] & 0xF0) << 4)
            o[2 * q + 1] = v - 4096 if v > 2047 else v
        for k in range(2 * npair, n):
            o[k] = <dst_t>_sample(b, fmt, k)
    elif fmt == 16:
        for k in range(n):
            o[k] = <dst_t>(<short>(b[2 * k] | (b[2 * k + 1] << 8)))
    elif fmt == 24:
        for k in range(n):
            v = b[3 * k] | (b[3 * k + 1] << 8) | (b[3 * k + 2] << 16)
            o[k] = <dst_t>(v - 16777216 if v > 8388607 else v)
    elif fmt == 61:
        for k in range(n):
            o[k] = <dst_t>(<short>((b[2 * k] << 8) | b[2 * k + 1]))
    elif fmt == 160:
        for k in range(n):
            o[k] = <dst_t>(<int32_t>(b[2 * k] | (b[2 * k + 1] << 8)) - 32768)
    elif fmt == 80:
        for k in range(n):
            o[k] = <dst_t>(<int32_t>b[k] - 128)
    else:
        for k in range(n):
            o[k] = <dst_t>_sample(b, fmt, k)


cdef inline Py_ssize_t _byte_of(int fmt, Py_ssize_t k) noexcept nogil:
    """Byte offset of flat sample ``k``, for ``k`` at the start of a packing group."""
    if fmt == 212:
        return 3 * (k >> 1)
    if fmt == 310 or fmt == 311:
        return 4 * (k // 3)
    if fmt == 24:
        return 3 * k
    if fmt == 32:
        return 4 * k
    if fmt == 80 or fmt == 8:
        return k
    return 2 * k


def unpack(const uint8_t[::1] buf, int fmt, Py_ssize_t n):
    """Decode ``n`` flat samples of a packed or non-native format into int32.

    Formats 16 and 32 need no unpacking (they are read in place by
    :func:`decode_into`); 8 goes through :func:`first_differences`.
    """
    out_arr = np.empty(n, dtype=np.int32)
    cdef int32_t[::1] o = out_arr
    cdef const uint8_t* b = &buf[0] if buf.shape[0] > 0 else NULL
    if n == 0:
        return out_arr
    with nogil:
        _unpack_ptr[int32_t](b, fmt, n, &o[0])
    return out_arr


cdef enum:
    BLOCK_SAMPLES = 4096

cdef int _decode_plain(const uint8_t* b, int fmt, Py_ssize_t n_frames, Py_ssize_t tspf,
                       Py_ssize_t n_sig, const int* col, const double* bl, const double* sc,
                       const int* row, const double* gain, bint exact, long invalid,
                       bint check_invalid, float* out, Py_ssize_t stride) noexcept nogil:
    """Decode every frame of a file whose signals have one sample per frame and no skew.

    Formats 16 and 32 are scaled straight from the file bytes, one signal at
    a time (each output row written once, contiguously). The other formats are
    unpacked block by block into a small scratch buffer (int16 when their
    samples fit, else int32) that stays in cache while every signal walks it,
    never into a whole-file copy. Returns -1 when the scratch buffer cannot
    be allocated.
    """
    cdef Py_ssize_t nb, t0, m, j, t, bad
    cdef float* rowp[12]
    cdef int32_t* tmp = NULL
    cdef short* tmp16 = NULL
    cdef const short* x16
    cdef const int32_t* x32
    cdef float* o
    # formats whose samples fit in 16 bits unpack to int16: the scaling loop
    # then reads half the bytes and vectorises (see ecg_scale_i32)
    cdef bint narrow = fmt == 212 or fmt == 310 or fmt == 311 or fmt == 61 or fmt == 160 or fmt == 80
    if (fmt == 16 and exact and tspf == 12 and n_sig == 12 and _AVX2
            and col[0] == 0 and col[1] == 1 and col[2] == 2 and col[3] == 3 and col[4] == 4
            and col[5] == 5 and col[6] == 6 and col[7] == 7 and col[8] == 8 and col[9] == 9
            and col[10] == 10 and col[11] == 11):
        for j in range(12):
            rowp[j] = out + row[j] * stride
        bad = ecg_decode16x12(<const short*>b, n_frames, bl, gain, rowp, invalid)
        if bad > 0 and check_invalid:
            x16 = <const short*>b
            for j in range(12):
                for t in range(n_frames):
                    if x16[t * 12 + j] == invalid:
                        rowp[j][t] = NAN
        if bad >= 0:
            return 0
    if fmt == 16 or fmt == 32:
        # read in place, in blocks of about BLOCK_SAMPLES samples: every signal then
        # walks a block that stays in L1, not the whole file (12 passes over 120 kB
        # for a 12-lead 10 s record)
        nb = BLOCK_SAMPLES // tspf
        if nb < 1:
            nb = 1
        t0 = 0
    else:
        # about 4096 samples per block; a multiple of 6 frames keeps every block
        # start on a 212 (pairs) and 310/311 (triples) packing group
        nb = (4096 // tspf) // 6 * 6
        if nb < 6:
            nb = 6
        if narrow:
            tmp16 = <short*>malloc(nb * tspf * sizeof(short))
        else:
            tmp = <int32_t*>malloc(nb * tspf * sizeof(int32_t))
        if tmp == NULL and tmp16 == NULL:
            return -1
    t0 = 0
    while t0 < n_frames:
        m = n_frames - t0
        if m > nb:
            m = nb
        if tmp != NULL:
            _unpack_ptr[int32_t](b + _byte_of(fmt, t0 * tspf), fmt, m * tspf, tmp)
        elif tmp16 != NULL:
            _unpack_ptr[short](b + _byte_of(fmt, t0 * tspf), fmt, m * tspf, tmp16)
        for j in range(n_sig):
            o = out + row[j] * stride + t0
            if fmt == 16 or narrow:
                x16 = (<const short*>tmp16 if narrow else <const short*>b + t0 * tspf) + col[j]
                bad = ecg_scale_i16(x16, m, tspf, bl[j], sc[j], <float>bl[j], <float>gain[j],
                                    exact, invalid, o)
                if bad and check_invalid:
                    for t in range(m):
                        if x16[t * tspf] == invalid:
                            o[t] = NAN
            else:
                x32 = (<const int32_t*>tmp if tmp != NULL else <const int32_t*>b + t0 * tspf) + col[j]
                bad = ecg_scale_i32(x32, m, tspf, bl[j], sc[j], <float>bl[j], <float>gain[j],
                                    exact, invalid, o)
                if bad and check_invalid:
                    for t in range(m):
                        if x32[t * tspf] == invalid:
                            o[t] = NAN
        t0 += m
    free(tmp)
    free(tmp16)
    return 0


def decode_into(const uint8_t[::1] buf, int fmt, Py_ssize_t n_frames, Py_ssize_t tspf,
                int[::1] col, int[::1] spf, int[::1] skew, double[::1] baseline,
                double[::1] scale, int[::1] row, long invalid, bint check_invalid,
                float[:, ::1] out, double[::1] gain=None):
    """Decode one signal file straight into physical float32 rows.

    For signal ``j`` of the file and output sample ``t``::

        d = sample(frame t + skew[j], position col[j] within the frame)
        out[row[j], t] = (d - baseline[j]) * scale[j]     (NaN if d == invalid)

    where ``scale = unit_factor / gain``. A frame past ``n_frames`` (which
    only a skewed signal reaches) reads as NaN. With several samples per
    frame (``spf[j] > 1``) the digital samples of the frame are averaged and
    truncated toward zero before the invalid test, as ``wfdb.rdrecord`` does.

    Parameters
    ----------
    buf : bytes-like
        The signal bytes, starting at the first sample (byte offset applied).
    fmt : int
        WFDB format code. Format 16 is read in place (little-endian hosts);
        32 is little-endian int32 (also used for data already unpacked by
        :func:`unpack` or :func:`first_differences`); others are unpacked first.
    n_frames : int
        Frames present in ``buf`` (the header's sample count).
    tspf : int
        Total samples per frame in this file.
    out : float32 array (n_out_rows, n_samples)
        Destination; ``n_samples`` is the record length.
    gain : float64 array, optional
        Per-signal gains for the exact float32 route: when given, every
        signal's ``scale`` must be ``1 / gain`` (millivolt units), and the
        gains, baselines and digital values must be exact in float32 (the
        caller checks: gains that round-trip through float32, baselines and
        samples below 2**23 in magnitude). Each value is then
        ``float32(d - baseline) / float32(gain)``, the correctly rounded
        float32 of the physical value, computed four or eight at a time.

    Notes
    -----
    The common layout (every signal one sample per frame, no skew: nearly
    every 12-lead record) is decoded block by block, so packed formats never
    expand into a whole-file int32 copy and each block is scaled from L1.
    """
    cdef Py_ssize_t n_sig = col.shape[0], n_out = out.shape[1], j, t, n_plain
    cdef const uint8_t* b
    cdef bint plain = True
    cdef int rc = 0
    if out.shape[0] == 0 or n_out == 0:
        return
    for j in range(n_sig):
        if spf[j] != 1 or skew[j] != 0:
            plain = False
            break
    if plain and fmt != 8:
        n_plain = n_frames if n_frames < n_out else n_out
        b = &buf[0] if buf.shape[0] > 0 else NULL
        if gain is not None and gain.shape[0] != n_sig:
            raise ValueError("gain must have one value per signal")
        with nogil:
            if n_plain > 0 and n_sig > 0:
                rc = _decode_plain(b, fmt, n_plain, tspf, n_sig, &col[0], &baseline[0],
                                   &scale[0], &row[0], &gain[0] if gain is not None else &scale[0],
                                   gain is not None, invalid, check_invalid, &out[0, 0],
                                   out.shape[1])
            if rc == 0 and n_plain < n_out:
                # the header's length is shorter than the output (never for one segment)
                for j in range(n_sig):
                    for t in range(n_plain, n_out):
                        out[row[j], t] = NAN
        if rc != 0:
            raise MemoryError("no memory for the WFDB decoding buffer")
        return
    if fmt != 16 and fmt != 32:
        buf = unpack(buf, fmt, n_frames * tspf).view(np.uint8)
        fmt = 32
    b = &buf[0] if buf.shape[0] > 0 else NULL
    with nogil:
        for j in range(n_sig):
            if fmt == 16:
                _scatter(<const short*>b, n_frames, tspf, col[j], spf[j], skew[j], baseline[j],
                         scale[j], invalid, check_invalid, &out[row[j], 0], n_out)
            else:
                _scatter(<const int32_t*>b, n_frames, tspf, col[j], spf[j], skew[j], baseline[j],
                         scale[j], invalid, check_invalid, &out[row[j], 0], n_out)


def encode_212(short[::1] flat):
    """Pack flat int16 samples (each in -2048..2047) into format-212 bytes.

    An odd count is padded with one zero sample, as the WFDB writers do.
    """
    cdef Py_ssize_t n = flat.shape[0], npair = (n + 1) // 2, p
    cdef unsigned int a, c
    out_arr = np.zeros(3 * npair, dtype=np.uint8)
    cdef uint8_t[::1] o = out_arr
    with nogil:
        for p in range(npair):
            a = (<unsigned int>flat[2 * p]) & 0xFFF
            c = ((<unsigned int>flat[2 * p + 1]) & 0xFFF) if 2 * p + 1 < n else 0
            o[3 * p] = a & 0xFF
            o[3 * p + 1] = ((a >> 8) & 0x0F) | ((c >> 4) & 0xF0)
            o[3 * p + 2] = c & 0xFF
    if n % 2:
        # wfdb writes ceil(1.5 n) bytes: drop the unused last byte of the pad pair
        return out_arr[:3 * npair - 1]
    return out_arr


def parse_annotations(const uint8_t[::1] buf):
    """Parse an MIT-format annotation byte stream.

    The stream is a sequence of little-endian 16-bit words, each holding a
    6-bit code ``A`` (high bits) and a 10-bit field ``I``. ``A`` in 1..49 is
    an annotation whose ``I`` is the sample increment; ``A == 59`` (SKIP)
    adds the signed 32-bit interval in the next two words (high word first);
    60 (NUM), 61 (SUB), 62 (CHN) set the low byte of ``I`` as the preceding
    annotation's num (signed), subtype (signed) and chan (unsigned); 63
    (AUX) carries ``I`` bytes of text, padded to an even count. A zero word
    ends the file. ``chan`` and ``num`` carry over to later annotations,
    ``subtype`` and ``aux`` do not.

    Returns
    -------
    sample, code, subtype, chan, num : int64 ndarrays
    aux : list of (index, bytes)
        The aux notes, by annotation index.
    complete : bool
        False when the stream stopped inside a field (truncated file).
    """
    cdef Py_ssize_t nw = buf.shape[0] // 2, w = 0, cap = nw + 1, n = 0, alen, nwords
    cdef int64_t total = 0, diff
    cdef unsigned int word, a, i
    cdef int64_t cur_chan = 0, cur_num = 0
    cdef bint complete = True, have
    sample_a = np.empty(cap, np.int64)
    code_a = np.empty(cap, np.int64)
    sub_a = np.zeros(cap, np.int64)
    chan_a = np.empty(cap, np.int64)
    num_a = np.empty(cap, np.int64)
    cdef int64_t[::1] sample = sample_a, code = code_a, sub = sub_a, chan = chan_a, num = num_a
    aux = []
    # mirror wfdb.rdann: the final word is taken as the terminator
    while w < nw - 1:
        diff = 0
        have = False
        # SKIP words before the annotation
        while w < nw:
            word = buf[2 * w] | (buf[2 * w + 1] << 8)
            if (word >> 10) == 59:
                if w + 2 >= nw:
                    complete = False
                    w = nw
                    break
                diff += <int32_t>((<unsigned int>buf[2 * w + 2] << 16) | (<unsigned int>buf[2 * w + 3] << 24)
                                  | <unsigned int>buf[2 * w + 4] | (<unsigned int>buf[2 * w + 5] << 8))
                w += 3
            else:
                have = True
                break
        if not have:
            break
        a = word >> 10
        i = word & 0x3FF
        total += diff + i
        sample[n] = total
        code[n] = a
        sub[n] = 0
        w += 1
        # extra fields that belong to this annotation
        while w < nw:
            word = buf[2 * w] | (buf[2 * w + 1] << 8)
            a = word >> 10
            if a <= 59:
                break
            i = word & 0x3FF
            if a == 61:
                sub[n] = <signed char>(i & 0xFF)
                w += 1
            elif a == 62:
                cur_chan = i & 0xFF
                w += 1
            elif a == 60:
                cur_num = <signed char>(i & 0xFF)
                w += 1
            else:  # 63, AUX
                alen = i & 0xFF
                nwords = (alen + 1) // 2
                if w + 1 + nwords > nw:
                    complete = False
                    aux.append((n, bytes(buf[2 * (w + 1):])[:alen]))
                    w = nw
                    break
                aux.append((n, bytes(buf[2 * (w + 1):2 * (w + 1) + alen])))
                w += 1 + nwords
        chan[n] = cur_chan
        num[n] = cur_num
        n += 1
    if buf.shape[0] % 2:
        complete = False
    return (sample_a[:n], code_a[:n], sub_a[:n], chan_a[:n], num_a[:n], aux, complete)


# -- header tokenising -----------------------------------------------------------

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeASCII


cdef inline bint _ws(uint8_t c) noexcept nogil:
    return c == 32 or c == 9


cdef inline bint _strict_int(const uint8_t* s, Py_ssize_t n, long long* v) noexcept nogil:
    """``[+-]?[0-9]{1,18}`` into ``v``; False for anything else (``int()`` accepts more
    spellings, e.g. underscores or surrounding blanks: those take the general route)."""
    cdef Py_ssize_t i = 0
    cdef bint neg = False
    cdef long long r = 0
    if n > 0 and (s[0] == 43 or s[0] == 45):  # '+' '-'
        neg = s[0] == 45
        i = 1
    if i >= n or n - i > 18:
        return False
    while i < n:
        if s[i] < 48 or s[i] > 57:
            return False
        r = r * 10 + (s[i] - 48)
        i += 1
    v[0] = -r if neg else r
    return True


cdef Py_ssize_t _split(const uint8_t* s, Py_ssize_t a, Py_ssize_t b, Py_ssize_t maxsplit,
                       Py_ssize_t* ts, Py_ssize_t* te) noexcept nogil:
    """Tokens of the stripped line ``s[a:b]`` as ``str.split(None, maxsplit)`` cuts them
    (blanks are spaces and tabs only: the caller rejected other control bytes); returns
    how many, at most ``maxsplit + 1`` (the last one holds the rest of the line)."""
    cdef Py_ssize_t k = 0, i = a
    while i < b:
        while i < b and _ws(s[i]):
            i += 1
        if i >= b:
            break
        ts[k] = i
        if k == maxsplit:
            te[k] = b  # the line is stripped: the rest ends at its last non-blank byte
            return k + 1
        while i < b and not _ws(s[i]):
            i += 1
        te[k] = i
        k += 1
    return k


def scan_header(bytes raw, Py_ssize_t max_signals):
    """Tokenise a plain single-file WFDB header, for the readers' cached-plan route.

    Accepts exactly the headers that ``ecgcore.io.wfdb._read_planned`` accepts,
    restricted to printable ASCII (plus tabs and line breaks) and to integers
    spelled ``[+-]?digits``; returns None for anything else, which the caller
    then reads through the general Python route (which raises the precise
    error, if any). Nothing here validates a layout: the plan the key maps to
    was built by the full header parser.

    Returns
    -------
    tuple or None
        ``(record_name, n_samples, file_name, key, comments, base_time,
        base_date)``: ``key`` (bytes) holds every field the decoding plan
        depends on (signal count, sampling frequency and, per signal line,
        format, gain, ADC resolution and zero, block size, description and the
        token count); ``comments`` the ``#`` lines without the ``#``, stripped;
        ``base_time``/``base_date`` are None when the record line omits them.
    """
    cdef const uint8_t* s = <const uint8_t*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw), i, a, b, k, nt, line = 0, n_sig = 0
    cdef Py_ssize_t ts[9]
    cdef Py_ssize_t te[9]
    cdef Py_ssize_t rs[6]
    cdef Py_ssize_t re[6]
    cdef Py_ssize_t f0 = 0, f1 = 0, n_rl = 0, kp = 0
    cdef long long v, n_samples = 0
    cdef uint8_t c
    cdef char* key
    comments = []
    for i in range(n):
        c = s[i]
        if (c < 32 and c != 9 and c != 10 and c != 13) or c > 126:
            return None
    # the key is at most the header plus one token-count byte and separators per line
    key = <char*>malloc(2 * n + 16)
    if key == NULL:
        raise MemoryError()
    try:
        i = 0
        while i < n:
            a = i
            while i < n and s[i] != 10 and s[i] != 13:
                i += 1
            b = i
            i += 1
            while a < b and _ws(s[a]):
                a += 1
            while b > a and _ws(s[b - 1]):
                b -= 1
            if a == b:
                continue
            if s[a] == 35:  # '#'
                a += 1
                while a < b and _ws(s[a]):
                    a += 1
                comments.append(PyUnicode_DecodeASCII(<const char*>s + a, b - a, NULL))
                continue
            if line == 0:
                n_rl = _split(s, a, b, 5, rs, re)
                if n_rl < 4:
                    return None
                if n_rl == 6:  # str.split() without a limit: a seventh token ends the date
                    k = rs[5]
                    while k < re[5] and not _ws(s[k]):
                        k += 1
                    re[5] = k
                for k in range(rs[0], re[0]):
                    if s[k] == 47:  # '/': a multi-segment record
                        return None
                if not _strict_int(s + rs[1], re[1] - rs[1], &v):
                    return None
                n_sig = <Py_ssize_t>v if 0 < v <= max_signals else 0
                if n_sig == 0 or not _strict_int(s + rs[3], re[3] - rs[3], &n_samples):
                    return None
                if n_samples <= 0:
                    return None
                for k in (1, 2):
                    memcpy(key + kp, s + rs[k], re[k] - rs[k])
                    kp += re[k] - rs[k]
                    key[kp] = 10
                    kp += 1
            elif line <= n_sig:
                nt = _split(s, a, b, 8, ts, te)
                if nt < 7:
                    return None
                if line == 1:
                    f0, f1 = ts[0], te[0]
                elif te[0] - ts[0] != f1 - f0 or memcmp(s + ts[0], s + f0, f1 - f0) != 0:
                    return None
                if (not _strict_int(s + ts[5], te[5] - ts[5], &v)
                        or not _strict_int(s + ts[6], te[6] - ts[6], &v)):
                    return None
                key[kp] = <char>(48 + nt)
                kp += 1
                for k in range(1, nt):
                    if k == 5 or k == 6:
                        continue
                    memcpy(key + kp, s + ts[k], te[k] - ts[k])
                    kp += te[k] - ts[k]
                    key[kp] = 10
                    kp += 1
            line += 1
        if line <= n_sig:  # fewer signal lines than declared
            return None
        return (PyUnicode_DecodeASCII(<const char*>s + rs[0], re[0] - rs[0], NULL),
                n_samples,
                PyUnicode_DecodeASCII(<const char*>s + f0, f1 - f0, NULL),
                PyBytes_FromStringAndSize(key, kp),
                comments,
                PyUnicode_DecodeASCII(<const char*>s + rs[4], re[4] - rs[4], NULL)
                if n_rl > 4 else None,
                PyUnicode_DecodeASCII(<const char*>s + rs[5], re[5] - rs[5], NULL)
                if n_rl > 5 else None)
    finally:
        free(key)
