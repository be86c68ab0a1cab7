"""The OpenAPI 3.1 description served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from donjon.steward.reasons import REVOCATION_REASONS
from donjon.steward.wire import BUNDLE, PKCS10

_PROBLEM = {"$ref": "#/components/responses/Problem"}


def _attest_op(summary: str, *, json_answer: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "example": "DER SEQUENCE OF Certificate [CA, leaf] (pkcs10) or "
            "Output ::= SEQUENCE {chain, issued} (bundle)",
        }
    }
    if json_answer:
        ok["application/json"] = {"schema": {"$ref": "#/components/schemas/Attestation"}}
    return {
        "summary": summary,
        "requestBody": {
            "required": True,
            "content": {
                PKCS10: {"schema": {"type": "string", "format": "binary"}},
                BUNDLE: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {"description": "certificates issued and audited", "content": ok},
            "400": _PROBLEM,
            "401": _PROBLEM,
            "403": _PROBLEM,
            "413": _PROBLEM,
            "415": _PROBLEM,
            "503": _PROBLEM,
        },
    }


def _audit_op(public_audit: bool) -> dict[str, Any]:
    access = (
        "This Steward serves audit records to anyone (started with --public-audit)."
        if public_audit
        else "Audit records show which workloads run where, so reading one takes a bearer "
        "token: the read-only audit token (--audit-token-file) or the admin token. With "
        "neither configured, audit reads over HTTP are disabled (403). The token is checked "
        "before the serial: without it the answer is 401, never 404."
    )
    return {
        "summary": "Audit record of an issued certificate",
        "description": access,
        "security": [] if public_audit else [{"bearer": []}],
        "parameters": [
            {
                "name": "serial",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9a-fA-F:]+$"},
            }
        ],
        "responses": {
            "200": {
                "description": "the record",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Record"}}
                },
            },
            "400": _PROBLEM,
            "401": _PROBLEM,
            "403": _PROBLEM,
            "404": _PROBLEM,
        },
    }


def openapi_document(version: str, *, public_audit: bool = False) -> dict[str, Any]:
    """The API as this Steward serves it (``public_audit`` drops the audit read's security)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Donjon Steward",
            "version": version,
            "description": "Attestation-gated certificate authority. A Keep posts a CSR "
            "carrying TEE evidence; the Steward verifies it against the vendor roots and "
            "its policy, audits, and answers with a certificate.",
        },
        "paths": {
            "/": {
                "get": {"summary": "Health check", "responses": {"200": {"description": "up"}}},
                "post": _attest_op("Enarx-compatible attestation", json_answer=False),
            },
            "/v1/attest": {
                "post": _attest_op(
                    "Attestation; send Accept: application/json for an explanation",
                    json_answer=True,
                )
            },
            "/v1/challenge": {
                "post": {
                    "summary": "A fresh challenge nonce for a Keep's workload claims; the "
                    "Steward accepts evidence bound to it once, before expires_at",
                    "responses": {
                        "200": {
                            "description": "the nonce (lowercase hex) and its expiry",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["nonce", "expires_at", "lifetime_seconds"],
                                        "properties": {
                                            "nonce": {
                                                "type": "string",
                                                "pattern": "^[0-9a-f]{64,128}$",
                                            },
                                            "expires_at": {"type": "string", "format": "date-time"},
                                            "lifetime_seconds": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _PROBLEM,
                        "503": _PROBLEM,
                    },
                }
            },
            "/v1/ca": {
                "get": {
                    "summary": "The Steward CA certificate (PEM; DER with Accept: "
                    "application/pkix-cert)",
                    "responses": {"200": {"description": "CA certificate"}},
                }
            },
            "/v1/crl": {
                "get": {
                    "summary": "Signed CRL of revoked certificates (DER; ?format=pem for PEM)",
                    "responses": {"200": {"description": "application/pkix-crl"}},
                }
            },
            "/v1/certificates/{serial}": {"get": _audit_op(public_audit)},
            "/v1/revoke": {
                "post": {
                    "summary": "Revoke a certificate (admin)",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["serial"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "serial": {"type": "string"},
                                        "reason": {
                                            "type": "string",
                                            "enum": list(REVOCATION_REASONS),
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "revoked (idempotent)"},
                        "400": _PROBLEM,
                        "401": _PROBLEM,
                        "403": _PROBLEM,
                        "404": _PROBLEM,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "POST /v1/revoke: the admin token. GET "
                    "/v1/certificates/{serial}: the audit token or the admin token.",
                }
            },
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem; `check` names the failed check",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                }
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "check": {"type": "string"},
                        "checks": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Check"},
                        },
                        "evidence_sha256": {"type": "string"},
                    },
                },
                "Check": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "passed": {"type": "boolean"},
                        "reason": {"type": "string"},
                    },
                },
                "Attestation": {
                    "type": "object",
                    "properties": {
                        "certificates": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "PEM: [CA, leaf...]",
                        },
                        "issued": {"type": "array", "items": {"type": "object"}},
                        "verdict": {"type": "object"},
                        "checks": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Check"},
                        },
                    },
                },
                "Record": {"type": "object"},
            },
        },
    }
