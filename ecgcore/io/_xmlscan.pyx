# cython: language_level=3
"""Byte-level kernel for XML sample text: whitespace-separated integers.

HL7 aECG ``<digits>`` elements hold tens of thousands of integers as text.
numpy's tokenizer needs a decoded ``str`` and costs ~30 ns per number; this
loop reads the bytes in place at a few ns per number. It accepts exactly
``[ws]* ([+-]? [0-9]{1,18} ws+)* ...`` and reports anything else (decimals,
exponents, junk, over-long numbers) by returning None, so the caller falls
back to the general, error-reporting path. Every iteration consumes a byte,
so no input can make it loop forever or read past the buffer.
"""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t

cnp.import_array()


cdef inline bint _is_ws(unsigned char c) noexcept nogil:
    return c == 32 or c == 9 or c == 10 or c == 13


cdef Py_ssize_t _scan_ints(const unsigned char* buf, Py_ssize_t n, double* o) noexcept nogil:
    """Whitespace-separated integers of buf[:n] into o; their count, or -1 when
    the text holds anything else (a token must be digits only, end at
    whitespace or the buffer end, and fit int64 exactly: 18 digits always do)."""
    cdef Py_ssize_t i = 0, k = 0, nd
    cdef unsigned char c
    cdef int64_t v
    cdef bint neg
    while i < n:
        c = buf[i]
        if _is_ws(c):
            i += 1
            continue
        neg = False
        if c == 45 or c == 43:          # '-' or '+'
            neg = c == 45
            i += 1
        v = 0
        nd = 0
        while i < n and 48 <= buf[i] <= 57:
            v = v * 10 + (buf[i] - 48)
            nd += 1
            i += 1
        if nd == 0 or nd > 18 or (i < n and not _is_ws(buf[i])):
            return -1
        o[k] = <double>(-v if neg else v)
        k += 1
    return k


# ---------------------------------------------------------------------------
# Byte searches over a whole document. ``bytes.find`` runs at ~2 GB/s on
# markup (it checks every window); an aECG document has a '<' every ~200
# bytes and sample text has none, so jumping from one first byte to the next
# with memchr and comparing there is several times faster. The functions take
# ``bytes`` (not typed memoryviews) because acquiring a buffer costs more
# than the search of a small element.

cimport cython
from libc.string cimport memchr, memcmp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE


cdef inline Py_ssize_t _find(const char* s, Py_ssize_t lo, Py_ssize_t hi,
                             const char* nd, Py_ssize_t m) noexcept nogil:
    """First index of nd[:m] in s[lo:hi], or -1 (m >= 1, 0 <= lo)."""
    cdef const char* p
    cdef char first = nd[0]
    while hi - lo >= m:
        p = <const char*>memchr(s + lo, first, hi - lo - m + 1)
        if p == NULL:
            return -1
        lo = p - s
        if memcmp(p, nd, m) == 0:
            return lo
        lo += 1
    return -1


cdef inline Py_ssize_t _clamp(Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    # the slice convention of bytes.find: negative counts from the end
    if i < 0:
        i += n
        if i < 0:
            i = 0
    return n if i > n else i


def find(bytes data, bytes needle, Py_ssize_t start=0, Py_ssize_t end=-1):
    """``data.find(needle, start, end)`` for a non-empty needle, memchr-paced.

    ``end=-1`` means the end of ``data`` (unlike bytes.find, where it would
    mean one byte before it).
    """
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), m = PyBytes_GET_SIZE(needle)
    if m == 0:
        raise ValueError("empty needle")
    if end == -1:
        end = n
    start = _clamp(start, n)
    end = _clamp(end, n)
    return _find(PyBytes_AS_STRING(data), start, end, PyBytes_AS_STRING(needle), m)


def element_spans(bytes data, bytes opener, bytes closer, Py_ssize_t lo, Py_ssize_t hi, list out):
    """Append ``(start, text_start, text_end, end)`` of each ``opener...closer`` in data[lo:hi].

    Exactly the spans of a ``bytes.find`` loop: the next opener is searched
    after the previous closer; an opener without a closer ends the search.
    """
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t mo = PyBytes_GET_SIZE(opener), mc = PyBytes_GET_SIZE(closer)
    cdef const char* s = PyBytes_AS_STRING(data)
    cdef const char* o = PyBytes_AS_STRING(opener)
    cdef const char* c = PyBytes_AS_STRING(closer)
    cdef Py_ssize_t pos, start, a, e
    if mo == 0 or mc == 0:
        raise ValueError("empty tag")
    lo = _clamp(lo, n)
    hi = _clamp(hi, n)
    pos = lo
    while True:
        start = _find(s, pos, hi, o, mo)
        if start < 0:
            return
        a = start + mo
        e = _find(s, a, hi, c, mc)
        if e < 0:
            return
        out.append((start, a, e, e + mc))
        pos = e + mc


@cython.boundscheck(False)
@cython.wraparound(False)
def ints_at(bytes data, Py_ssize_t a, Py_ssize_t b):
    """The whitespace-separated integers of ``data[a:b]`` (e.g. an aECG ``<digits>``
    text) as float64, or None when the text holds anything else (see the module
    docstring); read in place, without slicing or a buffer view.

    ``a`` and ``b`` follow the slice convention (negative counts from the end,
    clamped to the data). The numbers are exact (at most 18 digits each).
    """
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    a = _clamp(a, n)
    b = _clamp(b, n)
    if b < a:
        b = a
    cdef const unsigned char* buf = <const unsigned char*>PyBytes_AS_STRING(data) + a
    n = b - a
    # a token takes at least two bytes (digit and separator), so (n + 1) // 2
    # slots always suffice; the caller scales the result into a new array at
    # once, so the unused tail is short-lived
    out = np.empty((n + 1) // 2, np.float64)
    cdef double[::1] o = out
    cdef Py_ssize_t k
    with nogil:
        k = _scan_ints(buf, n, &o[0] if n else NULL)
    return None if k < 0 else out[:k]
