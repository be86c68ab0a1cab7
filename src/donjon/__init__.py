"""Donjon: run WebAssembly workloads in attested Keeps with transparent TLS."""

__version__ = "0.1.0"
