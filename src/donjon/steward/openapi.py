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


def openapi_document(version: str) -> dict[str, Any]:
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
            "/v1/certificates/{serial}": {
                "get": {
                    "summary": "Audit record of an issued certificate",
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
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Record"}
                                }
                            },
                        },
                        "400": _PROBLEM,
                        "404": _PROBLEM,
                    },
                }
            },
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
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
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
