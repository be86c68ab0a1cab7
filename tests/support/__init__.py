"""Helpers shared by every test directory (and the benches): PKI, TLS and ports.

``tests/`` is on ``sys.path`` through its rootdir conftest, so tests import
these as ``from support.pki import ...``.
"""
