"""The console's Secrets pages: names, versions, release policies and the release history.

Never a value: a version is shown by its metadata (``VersionRow.meta``: size, KEK id,
when it was made or withdrawn, its policy), and the history by who asked, when, and
which check refused them. The pages exist only when the Steward stores secrets (a KEK
is configured).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from donjon.steward.console.render import render
from donjon.steward.errors import NotFound
from donjon.steward.secrets_store import SecretStore, check_name

if TYPE_CHECKING:
    from donjon.steward.console.web import Console, Ctx

#: Release history rows shown (newest first).
HISTORY = 100
#: The policy's keys, in the order a reader wants them, with their meaning.
POLICY_KEYS = (
    ("allowed_workloads", "workloads (main.wasm SHA-256)"),
    ("allowed_packages", "packages (OCI manifest SHA-256)"),
    ("measurements", "TEE launch measurements"),
    ("platforms", "platforms"),
    ("min_tcb_status", "lowest TCB status"),
    ("development", "development Keeps"),
)


def policy_rows(policy: dict[str, Any]) -> list[tuple[str, str]]:
    """A release policy as (what, value) rows; an empty list means "any"."""
    rows = []
    for key, label in POLICY_KEYS:
        value = policy.get(key)
        if isinstance(value, list):
            shown = ", ".join(str(v) for v in value) if value else "any"
        elif isinstance(value, bool):
            shown = "allowed" if value else "refused"
        else:
            shown = "—" if value is None else str(value)
        rows.append((label, shown))
    return rows


def _store(console: Console) -> SecretStore:
    if console.secrets is None:
        raise NotFound("this Steward stores no secrets (no KEK configured)", check="secrets")
    return console.secrets


async def secrets(console: Console, ctx: Ctx) -> Response:
    store = _store(console)
    names = await run_in_threadpool(store.names)
    history = await run_in_threadpool(lambda: store.releases(limit=HISTORY))
    for entry in names:
        entry["policy_rows"] = policy_rows(entry.get("policy") or {})
    context = ctx.base("secrets", "Secrets") | {"names": names, "history": history}
    return render(console.env, "secrets.html", context)


async def secret(console: Console, ctx: Ctx) -> Response:
    store = _store(console)
    name = check_name(str(ctx.request.path_params["name"]))
    versions = await run_in_threadpool(store.versions, name)
    history = await run_in_threadpool(lambda: store.releases(name, limit=HISTORY))
    rows = [v.meta() | {"policy_rows": policy_rows(v.policy)} for v in reversed(versions)]
    context = ctx.base("secrets", f"Secret {name}") | {
        "name": name,
        "versions": rows,
        "history": history,
    }
    return render(console.env, "secret.html", context)
