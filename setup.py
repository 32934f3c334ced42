"""Build of the optional compiled book core (processors/book/_fastbook.pyx and its frame reader _framejson.pyx,
Cython in C++ mode).

Everything else is in pyproject.toml. The extension is optional: when it cannot be built (no C++ compiler, no
Cython), the install goes on and ``processors.book`` falls back to the pure-Python engine with a warning.
"""

from __future__ import annotations

import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed compile instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # any build failure leaves the pure engine in place
            print(f"orderflow: compiled book core not built ({exc}); the pure-Python engine will be used",
                  file=sys.stderr)

    def build_extension(self, ext: object) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"orderflow: compiled book core not built ({exc}); the pure-Python engine will be used",
                  file=sys.stderr)


DEPENDS = (
    "_fastbook.pxd", "_fastbook_state.pxi", "_fastbook_columns.pxi", "_fastbook_core.hpp", "_fastbook_dedup.hpp",
    "_fastbook_store.hpp",
)


def extensions() -> list[object]:
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("orderflow: Cython is missing; the compiled book core is not built", file=sys.stderr)
        return []
    from setuptools import Extension

    book = Extension(
        "processors.book._fastbook", ["processors/book/_fastbook.pyx"], language="c++",
        extra_compile_args=["-std=c++17"], depends=[f"processors/book/{name}" for name in DEPENDS],
    )
    frames = Extension(
        "processors.book._framejson", ["processors/book/_framejson.pyx"], language="c++",
        extra_compile_args=["-std=c++17"], depends=["processors/book/_framejson.hpp"],
    )
    return list(cythonize([book, frames], language_level=3, quiet=True))


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
