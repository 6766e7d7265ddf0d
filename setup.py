"""Build script: compiles the C++ (pybind11) and Cython extensions.

Extensions are discovered, not listed, so adding a kernel is adding a file:

* ``csrc/NAME.cpp``            -> ``ecgcore._kernels.NAME``   (pybind11, C++17)
* ``ecgcore/**/_NAME.pyx``     -> the dotted module of that path (Cython)

``models/`` and ``cli/`` are installed as ``ecgcore.models`` and ``ecgcore.cli``,
so only the ``ecgcore`` namespace lands in site-packages.

Set ``ECGCORE_NATIVE=1`` to compile for the build machine's CPU (``-march=native``);
the default builds portable code. ``ECGCORE_ONLY=chain,medfilt`` builds only the named
extensions (by file stem), so a kernel under edit can be rebuilt without recompiling,
or being broken by, the others.
"""

import glob
import os
import sys

import numpy as np
from setuptools import find_packages, setup
from setuptools.extension import Extension

HERE = os.path.dirname(os.path.abspath(__file__))


def _flags():
    if sys.platform == "win32":
        return ["/O2", "/std:c++17"], []
    cflags = ["-O3", "-fno-math-errno"]
    if os.environ.get("ECGCORE_NATIVE") == "1":
        cflags.append("-march=native")
    return cflags, []


def _wanted(name):
    only = os.environ.get("ECGCORE_ONLY", "").strip()
    return not only or name in {n.strip() for n in only.split(",")}


def cpp_extensions():
    from pybind11.setup_helpers import Pybind11Extension
    cflags, lflags = _flags()
    exts = []
    for src in sorted(glob.glob(os.path.join("csrc", "*.cpp"))):
        name = os.path.splitext(os.path.basename(src))[0]
        if not _wanted(name):
            continue
        exts.append(Pybind11Extension(
            f"ecgcore._kernels.{name}", [src], cxx_std=17, include_dirs=["csrc"],
            extra_compile_args=cflags, extra_link_args=lflags))
    return exts


def cython_extensions():
    from Cython.Build import cythonize
    cflags, _ = _flags()
    exts = []
    for pyx in sorted(glob.glob(os.path.join("ecgcore", "**", "_*.pyx"), recursive=True)):
        mod = os.path.splitext(pyx)[0].replace(os.sep, ".")
        if not _wanted(mod.rsplit(".", 1)[-1]):
            continue
        exts.append(Extension(mod, [pyx], include_dirs=[np.get_include()],
                              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                              extra_compile_args=cflags))
    if not exts:
        return []
    return cythonize(exts, language_level=3, quiet=True,
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True, "initializedcheck": False})


packages = find_packages(include=["ecgcore", "ecgcore.*"])
packages += ["ecgcore.models"] + ["ecgcore.models." + p for p in find_packages("models")]
packages += ["ecgcore.cli"] + ["ecgcore.cli." + p for p in find_packages("cli")]
# the web page's files: a data-only folder, listed so that setuptools installs it as such
packages += ["ecgcore.cli.static"]

setup(
    packages=packages,
    package_dir={"ecgcore": "ecgcore", "ecgcore.models": "models", "ecgcore.cli": "cli"},
    package_data={"ecgcore": ["py.typed"], "ecgcore.cli.static": ["*"],
                  "ecgcore.models": ["configs/*.yaml"]},
    ext_modules=cpp_extensions() + cython_extensions(),
    zip_safe=False,
)
