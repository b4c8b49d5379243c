"""Declares the Cython extensions (dna._core, dna.store.sqlite._c); everything else is in
pyproject.toml.

A failed compile fails the build: nothing here catches it.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

CORE = ["mailbox", "inbox", "writeset", "framing", "kv", "dispatch"]

directives = {"language_level": "3", "boundscheck": False, "wraparound": False}
macros = []
if os.environ.get("DNA_DEBUG_BUILD"):
    directives.update(linetrace=True, boundscheck=True, wraparound=True)
    macros.append(("CYTHON_TRACE_NOGIL", "1"))

extensions = [
    Extension(
        f"dna._core.{name}",
        [f"src/dna/_core/{name}.pyx"],
        define_macros=macros,
        extra_compile_args=["-O2"],
    )
    for name in CORE
]
# the SQLite store's binding: links the system libsqlite3 (libsqlite3-dev)
extensions.append(
    Extension(
        "dna.store.sqlite._c",
        ["src/dna/store/sqlite/_c.pyx"],
        libraries=["sqlite3"],
        define_macros=macros,
        extra_compile_args=["-O2"],
    )
)

setup(ext_modules=cythonize(extensions, compiler_directives=directives, annotate=False))
