"""One process-wide lock around pypdfium2.

PDFium is not thread-safe: two threads opening or walking documents at once
can crash the process. Every ecgcore caller of pypdfium2 (the vector-PDF
reader, image rendering for the image model, the web service) holds this lock.
"""

import threading

PDFIUM_LOCK = threading.RLock()
