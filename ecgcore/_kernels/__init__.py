"""Compiled C++ kernels (pybind11), built from ``csrc/NAME.cpp`` as ``ecgcore._kernels.NAME``.

Kernels never validate their input: the wrappers in :mod:`ecgcore.signal` and
friends check dtype, contiguity and shapes first.
"""
