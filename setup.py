"""Build hook for the native VapourSynth shim (see plugins/vapoursynth/)."""

from setuptools import setup

setup()
