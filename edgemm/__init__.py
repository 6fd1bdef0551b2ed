"""edgemm: make a camera+microphone model small, export it to every edge format, verify it, run it live.

This file imports nothing heavy: `import edgemm.runtimes` must stay torch-free.
"""
__version__ = "0.1.0"

_PUBLIC = {  # the Python API for your own model; imported on first use (these need torch)
    "export_model": "edgemm.exporting",
    "load_spec": "edgemm.user_model",
    "load_factory": "edgemm.user_model",
    "load_weights": "edgemm.user_model",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'edgemm' has no attribute {name!r}")
