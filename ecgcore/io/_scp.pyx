# cython: language_level=3
"""Byte-level SCP-ECG kernels: CRC-CCITT, the Huffman bit-stream decoder, and
the inverse of the first/second-difference coding (EN 1064, sections 2, 5, 6).

The Python wrapper (``ecgcore.io.scp``) validates every length and offset and
hands these kernels clean buffers. The kernels still never trust the *content*
of a buffer: a bit stream that ends early, a code that no table entry matches,
a literal longer than 32 bits or an unknown table number is reported through a
status code, and every loop iteration consumes at least one input bit, so a
hostile stream cannot make the decoder loop forever or read past its buffer.
"""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t

cnp.import_array()

# Status codes of huffman_decode (the wrapper turns them into ReadError messages).
cdef enum:
    _OK = 0
    _BAD_CODE = 1       # the next bits match no code of the current table
    _TRUNCATED = 2      # a literal value runs past the end of the stream
    _BAD_TABLE = 3      # a table switch names a table that does not exist

OK, BAD_CODE, TRUNCATED, BAD_TABLE = _OK, _BAD_CODE, _TRUNCATED, _BAD_TABLE

cdef uint16_t _CRC_TABLE[256]


cdef void _init_crc_table():
    cdef int i, j
    cdef uint16_t c
    for i in range(256):
        c = <uint16_t>(i << 8)
        for j in range(8):
            if c & 0x8000:
                c = <uint16_t>((c << 1) ^ 0x1021)
            else:
                c = <uint16_t>(c << 1)
        _CRC_TABLE[i] = c


_init_crc_table()


def crc_ccitt(const uint8_t[::1] buf, Py_ssize_t start=0, Py_ssize_t stop=-1):
    """CRC-CCITT (polynomial 0x1021, initial value 0xFFFF, no reflection) of
    ``buf[start:stop]``, the checksum EN 1064 puts in front of the file and of
    every section."""
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t i
    cdef uint16_t crc = 0xFFFF
    if stop < 0 or stop > n:
        stop = n
    if start < 0:
        start = 0
    with nogil:
        for i in range(start, stop):
            crc = <uint16_t>((crc << 8) ^ _CRC_TABLE[((crc >> 8) ^ buf[i]) & 0xFF])
    return int(crc)


cdef inline uint64_t _peek(const uint8_t* data, Py_ssize_t nbytes, int64_t bitpos, int nbits) noexcept nogil:
    # The next ``nbits`` (<= 32) bits, MSB first; bytes past the end read as zero
    # (callers check ``bitpos + nbits <= total bits`` before trusting the value).
    cdef Py_ssize_t byte = <Py_ssize_t>(bitpos >> 3)
    cdef int shift = <int>(bitpos & 7)
    cdef uint64_t acc = 0
    cdef int k
    for k in range(5):
        acc <<= 8
        if byte + k < nbytes:
            acc |= data[byte + k]
    # acc holds 40 bits starting at ``byte``; drop the ``shift`` bits already used.
    return (acc >> (40 - shift - nbits)) & ((<uint64_t>1 << nbits) - 1)


def huffman_decode(const uint8_t[::1] data, Py_ssize_t max_out,
                   const int32_t[::1] tab_start, const int32_t[::1] prefix_len,
                   const int32_t[::1] total_len, const int32_t[::1] mode,
                   const int32_t[::1] value, const int64_t[::1] code,
                   int first_table=0):
    """Decode one lead's Huffman bit stream.

    Parameters
    ----------
    data : uint8 array
        The lead's bytes (already sliced to the byte count of section 5/6).
    max_out : int
        Stop after this many values (the expected sample count); the zero bits
        that pad the last byte would otherwise decode as extra zeros.
    tab_start : int32 array, shape (n_tables + 1,)
        Entries of table ``t`` are ``tab_start[t]:tab_start[t + 1]``, sorted
        by prefix length.
    prefix_len, total_len, mode, value : int32 arrays
        Per entry: bits in the prefix (1..32), bits in the whole code
        (prefix + literal, literal <= 32 bits), table-mode switch (1: a value,
        0: switch to table ``value``, 0-based here), base value.
    code : int64 array
        The prefix, MSB-first (the wrapper has undone the bit reversal).

    Returns
    -------
    out : int32 array
        The decoded values (``n`` of them).
    n : int
        Values decoded; fewer than ``max_out`` when the stream ran out.
    status : int
        ``OK``, ``BAD_CODE``, ``TRUNCATED`` or ``BAD_TABLE``.
    bitpos : int
        Bits consumed.
    """
    cdef Py_ssize_t nbytes = data.shape[0]
    cdef int64_t total_bits = <int64_t>nbytes * 8
    cdef int64_t bitpos = 0
    cdef Py_ssize_t n_tables = tab_start.shape[0] - 1
    cdef Py_ssize_t k = 0
    cdef int t = first_table
    cdef int e, e_end, L, extra, status = 0
    cdef int matched
    cdef uint64_t bits, window
    cdef int64_t v
    if max_out < 0:
        max_out = 0
    out_arr = np.empty(max_out, dtype=np.int32)
    cdef int32_t[::1] out = out_arr
    cdef const uint8_t* p = &data[0] if nbytes > 0 else NULL
    if n_tables <= 0 or t < 0 or t >= n_tables:
        return out_arr[:0], 0, BAD_TABLE, 0
    with nogil:
        while k < max_out and bitpos < total_bits:
            matched = -1
            e = tab_start[t]
            e_end = tab_start[t + 1]
            # one 32-bit window per symbol; each entry compares its top L bits
            window = _peek(p, nbytes, bitpos, 32)
            while e < e_end:
                L = prefix_len[e]
                if bitpos + L > total_bits:
                    break   # sorted by length: no longer code can fit either
                if (window >> (32 - L)) == <uint64_t>code[e]:
                    matched = e
                    break
                e += 1
            if matched < 0:
                # Every code of the table fitted in the remaining bits and none
                # matched: corrupt. Otherwise the leftover bits are padding.
                if e == e_end:
                    status = _BAD_CODE
                break
            bitpos += prefix_len[matched]
            if mode[matched] == 0:
                # Table switch: it consumed >= 1 bit (prefix_len >= 1 is validated),
                # so a chain of switches still ends with the stream.
                t = value[matched]
                if t < 0 or t >= n_tables:
                    status = _BAD_TABLE
                    break
                continue
            extra = total_len[matched] - prefix_len[matched]
            if extra > 0:
                if bitpos + extra > total_bits:
                    status = _TRUNCATED
                    break
                bits = _peek(p, nbytes, bitpos, extra)
                bitpos += extra
                # two's-complement literal of ``extra`` bits
                if bits & (<uint64_t>1 << (extra - 1)):
                    v = <int64_t>bits - (<int64_t>1 << extra)
                else:
                    v = <int64_t>bits
                out[k] = <int32_t>v
            else:
                out[k] = value[matched]
            k += 1
    return out_arr[:k], k, status, bitpos


def undo_differences(const int32_t[::1] d, int order):
    """Invert SCP difference coding in float64 (exact for |x| < 2**53; never
    overflows the way an integer accumulator could on hostile input).

    order 0: x = d; order 1: x[n] = d[n] + x[n-1]; order 2:
    x[n] = d[n] + 2 x[n-1] - x[n-2], the first ``order`` values taken as they are.
    """
    cdef Py_ssize_t n = d.shape[0]
    cdef Py_ssize_t i
    out_arr = np.empty(n, dtype=np.float64)
    cdef double[::1] x = out_arr
    with nogil:
        for i in range(n):
            x[i] = d[i]
        if order == 1:
            for i in range(1, n):
                x[i] = x[i] + x[i - 1]
        elif order == 2:
            for i in range(2, n):
                x[i] = x[i] + 2.0 * x[i - 1] - x[i - 2]
    return out_arr
