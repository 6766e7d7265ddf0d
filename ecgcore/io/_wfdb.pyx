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
    cdef int32_t* tmp = NULL
    cdef short* tmp16 = NULL
    cdef const short* x16
    cdef const int32_t* x32
    cdef float* o
    # formats whose samples fit in 16 bits unpack to int16: the scaling loop
    # then reads half the bytes and vectorises (see ecg_scale_i32)
    cdef bint narrow = fmt == 212 or fmt == 310 or fmt == 311 or fmt == 61 or fmt == 160 or fmt == 80
    if fmt == 16 or fmt == 32:
        nb = n_frames
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
