# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Philips XLI waveform decompression (facts/formats.md §5), in C speed.

XLI is what Philips Sierra/PageWriter XML files store in ``parsedwaveforms``:
one chunk per lead, each an 8-byte header (uint32 LE payload length, 2 unused
bytes, int16 LE seed) followed by an LZW stream of 10-bit MSB-first codes. The
LZW output is planar (all high bytes, then all low bytes of int16 values) and
holds second-difference residuals with a +64 bias and a one-step lag.

Every length and code is checked against the buffer it indexes, so a corrupt
stream raises ``ValueError`` (the Python reader turns it into ReadError)
instead of reading out of bounds or growing without limit.
"""

import numpy as np
cimport numpy as cnp
from libc.stdlib cimport malloc, realloc, free
from libc.stdint cimport int16_t, int32_t, uint8_t, uint32_t

cnp.import_array()

# Codes are 10 bits; the dictionary grows from the 256 single bytes while the
# next free code is at most (1 << 10) - 2, then stays frozen (no clear code).
# The one code above that, all ones, never names a string: writers use it to
# end the stream (seen in real files).
cdef enum:
    CODE_BITS = 10
    MAX_CODE = 1022
    END_CODE = 1023
    DICT_SIZE = 1024

#: Largest decoded payload accepted per chunk, bytes: far above any ECG lead
#: (5500 samples are 11 kB) yet small enough that a hostile stream cannot
#: exhaust memory.
MAX_CHUNK_OUTPUT = 1 << 24

# error codes of the nogil LZW kernel
cdef enum:
    ERR_CODE = -1
    ERR_SIZE = -2
    ERR_MEM = -3


cdef Py_ssize_t _lzw(const uint8_t* src, Py_ssize_t n, uint8_t** out_p,
                     Py_ssize_t* cap_p, Py_ssize_t limit, Py_ssize_t* bad_code) noexcept nogil:
    """Decode one LZW stream into ``*out_p`` (grown with realloc). Returns the
    number of bytes written, or a negative error code."""
    cdef int32_t off[DICT_SIZE]      # where each code's string starts in the output
    cdef int32_t length[DICT_SIZE]   # and how long it is (strings are runs of the output)
    cdef Py_ssize_t pos = 0, cap = cap_p[0], i = 0, k
    cdef Py_ssize_t prev_start = 0, prev_len = 0, start, ln
    cdef int32_t next_code = 256, code, prev = -1
    cdef uint32_t buf = 0
    cdef int nbits = 0
    cdef uint8_t* out = out_p[0]
    cdef uint8_t* grown
    while True:
        while nbits < CODE_BITS and i < n:
            buf = (buf << 8) | src[i]
            i += 1
            nbits += 8
        if nbits < CODE_BITS:
            break                      # trailing padding bits
        code = (buf >> (nbits - CODE_BITS)) & 0x3FF
        nbits -= CODE_BITS
        buf &= (1u << nbits) - 1
        if code == END_CODE:
            break                      # the all-ones code ends the stream
        # length of the string this code stands for
        if code < 256:
            ln = 1
        elif code < next_code:
            ln = length[code]
        elif code == next_code and prev >= 0 and next_code <= MAX_CODE:
            ln = prev_len + 1          # KwKwK: previous string + its own first byte
        else:
            bad_code[0] = code
            return ERR_CODE
        if pos + ln > cap:
            while pos + ln > cap:
                cap *= 2
            if cap > limit:
                return ERR_SIZE
            grown = <uint8_t*> realloc(out, cap)
            if grown == NULL:
                return ERR_MEM
            out = grown
            out_p[0] = out
            cap_p[0] = cap
        if code < 256:
            out[pos] = <uint8_t> code
        else:
            # forward byte copy: in the KwKwK case the last byte read is the
            # first byte written, which is exactly the string's first byte
            start = prev_start if code == next_code else off[code]
            for k in range(ln):
                out[pos + k] = out[start + k]
        if prev >= 0 and next_code <= MAX_CODE:
            # the new string is the previous one plus this one's first byte,
            # i.e. the previous output run extended by one byte
            off[next_code] = <int32_t> prev_start
            length[next_code] = <int32_t> (prev_len + 1)
            next_code += 1
        prev = code
        prev_start = pos
        prev_len = ln
        pos += ln
    return pos


cdef void _undiff(const uint8_t* planar, Py_ssize_t nbytes, int16_t seed,
                  int16_t* x, Py_ssize_t m) noexcept nogil:
    """Planar bytes -> int16 residuals -> second-difference reconstruction."""
    cdef Py_ssize_t half = m, j
    cdef int32_t d, last, x1, x2, v
    for j in range(m):
        # the odd final byte (if any) pairs with a zero pad byte
        d = <int16_t> ((planar[j] << 8) | (planar[half + j] if half + j < nbytes else 0))
        if j < 2:
            x[j] = <int16_t> d
            if j == 1:
                last = seed
            continue
        x1 = x[j - 1]
        x2 = x[j - 2]
        v = 2 * x1 - x2 - last
        x[j] = <int16_t> v
        last = d - 64


def decode_xli(const uint8_t[::1] data, Py_ssize_t max_chunks=64):
    """Decode an XLI byte stream (already base64-decoded).

    Parameters
    ----------
    data : bytes-like
        Concatenated XLI chunks, one per lead.
    max_chunks : int
        Refuse streams with more chunks than this (bounded work on hostile input).

    Returns
    -------
    list of ndarray of int16
        One array of raw counts per chunk (lead), before the limb-lead
        residual reconstruction.

    Raises
    ------
    ValueError
        A chunk header or payload runs past the end of the data, an LZW code
        points past the dictionary, or the output exceeds MAX_CHUNK_OUTPUT.
    """
    cdef Py_ssize_t n = data.shape[0], pos = 0, size, got, m, cap, bad = 0
    cdef int16_t seed
    cdef uint8_t* out
    cdef const uint8_t* base
    cdef cnp.ndarray[int16_t, ndim=1] lead
    cdef int16_t[::1] lead_view
    cdef Py_ssize_t limit = MAX_CHUNK_OUTPUT
    leads = []
    if n == 0:
        raise ValueError("XLI data is empty")
    base = &data[0]
    cap = 16384
    out = <uint8_t*> malloc(cap)
    if out == NULL:
        raise MemoryError()
    try:
        while pos < n:
            if n - pos < 8:
                raise ValueError(f"XLI chunk header at byte {pos} is truncated "
                                 f"({n - pos} of 8 bytes)")
            size = (<Py_ssize_t> base[pos] | (<Py_ssize_t> base[pos + 1] << 8)
                    | (<Py_ssize_t> base[pos + 2] << 16) | (<Py_ssize_t> base[pos + 3] << 24))
            seed = <int16_t> (base[pos + 6] | (base[pos + 7] << 8))
            if size > n - pos - 8:
                raise ValueError(f"XLI chunk {len(leads)} declares {size} payload bytes but "
                                 f"only {n - pos - 8} remain")
            if len(leads) >= max_chunks:
                raise ValueError(f"XLI stream has more than {max_chunks} chunks")
            with nogil:
                got = _lzw(base + pos + 8, size, &out, &cap, limit, &bad)
            if got == ERR_CODE:
                raise ValueError(f"XLI chunk {len(leads)}: LZW code {bad} points past the dictionary")
            if got == ERR_SIZE:
                raise ValueError(f"XLI chunk {len(leads)} decompresses to more than {limit} bytes")
            if got == ERR_MEM:
                raise MemoryError()
            m = (got + 1) // 2
            lead = np.empty(m, dtype=np.int16)
            lead_view = lead
            if m:
                with nogil:
                    _undiff(out, got, seed, &lead_view[0], m)
            leads.append(lead)
            pos += 8 + size
    finally:
        free(out)
    return leads
