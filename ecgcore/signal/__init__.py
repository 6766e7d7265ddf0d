"""Signal kernels: filtering, resampling, baseline removal, standardisation,
segmentation and quality measures for arrays of any leading shape.

Every function takes time on ``axis`` (default the last), keeps float32 as
float32 and float64 as float64, and equals a named reference (scipy or the
published pipeline) as documented in its module. Python only designs filters and
checks arguments; the per-sample loops run in the C++ kernels of
``ecgcore._kernels`` (GIL released, vectorised across leads and records).
"""

from ecgcore.signal.baseline import median_baseline, median_kernel_size, running_median
from ecgcore.signal.chain import chain
from ecgcore.signal.filters import (bandpass, filtfilt, highpass, lowpass, notch, sosfilt,
                                    sosfiltfilt)
from ecgcore.signal.normalize import zscore, zscore_segments
from ecgcore.signal.quality import quality
from ecgcore.signal.resample import resample, resample_length
from ecgcore.signal.segment import n_segments, segment

__all__ = ["bandpass", "highpass", "lowpass", "notch", "sosfilt", "sosfiltfilt", "filtfilt",
           "median_baseline", "running_median", "median_kernel_size", "resample", "resample_length",
           "zscore", "zscore_segments", "segment", "n_segments", "quality", "chain"]
