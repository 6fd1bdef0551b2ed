"""edgemm: make a camera+microphone model small, export it to every edge format, verify it, run it live.

This file imports nothing heavy: `import edgemm.runtimes` must stay torch-free.
"""
__version__ = "0.1.0"
