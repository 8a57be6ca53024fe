"""The optional C hot loop (logmetrics/_hotloop.c, see logmetrics/hotloop.py); everything else is in
pyproject.toml. Without a C compiler the build goes on without it, and replay runs in Python."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("logmetrics._hotloop", ["logmetrics/_hotloop.c"], optional=True,
                  extra_compile_args=["-O2", "-fno-strict-aliasing"]),
    ],
)
