"""Donjon packages as OCI artifacts: references, registry client, artifact layout, push.

A package is pushed following the CNCF wasm OCI artifact layout (config media
type ``application/vnd.wasm.config.v0+json``, wasm layer ``application/wasm``);
the Keep config and static files have their own layers (``docs/deploy.md``).
Every byte read from a registry is checked against its digest before use.
"""
