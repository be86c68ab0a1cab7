"""``donjon demo --deploy``: a confidential package from a registry, with a secret, timed.

The same flow as the end-to-end test, on this machine and the simulated TEE:
a registry (Debian's ``docker-registry``) and a Steward with secrets start on
127.0.0.1; ``examples/secret-http`` is pushed sealed, its key and a database
password go to the Steward, bound to the package's digest; a Keep runs
``oci://...@sha256:...``, attests, receives both, opens the module in memory
and serves the password over TLS to a relying party that checks the package
digest in the Keep's certificate.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

from donjon.atomicfile import write_bytes
from donjon.cli.demo import KEEP_TIMEOUT, DemoFailed, Outcome, Step, _claims, run_steps

SECRET_EXAMPLE = Path("examples") / "secret-http" / "main.c"
REGISTRY_BIN = "docker-registry"
ADMIN_TOKEN_BYTES = 24


def _example() -> Path:
    import donjon

    candidate = Path(donjon.__file__).resolve().parents[2] / SECRET_EXAMPLE
    if not candidate.is_file():
        raise DemoFailed(f"{SECRET_EXAMPLE} not found: run from a source checkout")
    return candidate


def _start_registry(lab: Any, labmod: Any) -> tuple[str, Path]:
    """docker-registry on 127.0.0.1 with TLS (no auth: it lives only for this demo)."""
    binary = shutil.which(REGISTRY_BIN) or (
        "/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists() else None
    )
    if binary is None:
        raise DemoFailed(
            "docker-registry is not installed (Debian: apt-get install docker-registry)"
        )
    directory = lab.root / "registry"
    tls = labmod.make_tls(directory / "https", datetime.now(UTC))
    port = labmod.free_port()
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'storage'}\n"
        f"http:\n  addr: {labmod.LOCALHOST}:{port}\n  secret: {secrets.token_hex(16)}\n"
        f"  tls:\n    certificate: {tls.cert}\n    key: {tls.key}\n"
    )
    env = {k: v for k, v in lab.env().items() if not k.startswith("REGISTRY_")}
    proc = labmod.Proc("registry", [binary, "serve", str(config)], env, lab.root)
    lab.procs.insert(0, proc)  # stopped last
    labmod._wait_listening(proc, port, 30.0)
    return f"{labmod.LOCALHOST}:{port}", tls.ca


def run_deploy_demo(
    *, keep_going: bool, progress: Callable[[str], None], keep_files: bool = False
) -> Outcome:
    from donjon.attestation.claims import REVOCATION_NOT_CHECKED
    from donjon.attestation.peer import PeerExpectations
    from donjon.keep.oci import reference
    from donjon.keep.oci.publish import push
    from donjon.keep.sim import lab as labmod
    from donjon.steward.secrets_admin import SecretsAdmin

    outcome = Outcome()
    names = [
        "initialise the simulated TEE",
        "build the secret-http workload",
        "start an OCI registry (HTTPS)",
        "start a Steward with secrets (KEK, admin token)",
        "push the package, main.wasm sealed; register its key",
        "store the database password, bound to the package digest",
        "run the Keep from oci://...@sha256 (attest, get key and secret)",
        "fetch the page as a relying party (package digest checked)",
        "stop everything",
    ]
    outcome.steps = [Step(name) for name in names]
    ctx: dict[str, Any] = {}
    password = f"demo-password-{secrets.token_hex(6)}"

    with labmod.Lab(keep_root=keep_files) as lab, labmod.interrupt_on_sigterm():

        def sim() -> str:
            state = lab.init_sim()
            ark = state.ark.fingerprint(hashes.SHA256()).hex()
            return f"{state.config.product.value}, ARK sha256 {ark[:16]}..."

        def build() -> str:
            from donjon import toolchain

            ctx["wasm"] = toolchain.build(_example())
            return f"main.wasm sha256 {labmod.sha256_file(ctx['wasm']).hex()}"

        def registry() -> str:
            ctx["registry"], ctx["registry_ca"] = _start_registry(lab, labmod)
            return f"https://{ctx['registry']}/v2/"

        def steward() -> str:
            kek = lab.root / "kek"
            token = lab.root / "admin.token"
            write_bytes(kek, secrets.token_bytes(32).hex().encode(), mode=0o600)
            ctx["token"] = secrets.token_hex(ADMIN_TOKEN_BYTES)
            write_bytes(token, ctx["token"].encode(), mode=0o600)
            policy = lab.write_policy([labmod.sha256_file(ctx["wasm"])])
            extra = ["--secrets-kek-file", str(kek), "--admin-token-file", str(token)]
            ctx["steward"] = lab.start_steward(policy, extra=extra)
            ctx["admin"] = SecretsAdmin(ctx["steward"].url, ctx["token"], lab.https_ca)
            return f"{ctx['steward'].url}, secrets enabled, policy pins the workload"

        def publish() -> str:
            port = labmod.free_port()
            config = (
                lab.steward_config(ctx["steward"])
                + '\n[[files]]\nkind = "null"\n[[files]]\nkind = "stdout"\n'
                '[[files]]\nkind = "stderr"\n'
                '[[files]]\nkind = "secret"\nsecret = "db"\nname = "/run/secrets/db"\n'
                f'[[files]]\nkind = "listen"\nname = "http"\naddr = "127.0.0.1"\nport = {port}\n'
            )
            package = lab.write_package("secret-http", ctx["wasm"], config)
            ref = reference.parse(f"oci://{ctx['registry']}/demo/secret-http:latest")
            result = push(
                package, ref, credentials=None, ca_bundle=ctx["registry_ca"], encrypt=True
            )
            assert result.key is not None and result.key_secret is not None
            ctx["admin"].put(result.key_secret, result.key, _sim_policy(result.digest))
            ctx["ref"], ctx["digest"], ctx["port"] = result.reference, result.digest, port
            return f"{result.digest} ({result.size} bytes; the registry holds ciphertext)"

        def store() -> str:
            ctx["admin"].put("db", password.encode(), _sim_policy(ctx["digest"]))
            return "secret db version 1, allowed_packages = [that digest], platform sim"

        def keep() -> str:
            env_ca = str(ctx["registry_ca"])
            proc = lab.spawn(
                "keep secret-http",
                ["run", str(ctx["ref"]), "--platform", "sim", "--registry-ca", env_ca],
            )
            ctx["keep"] = proc
            serving = proc.wait_for(r"serving on fd", KEEP_TIMEOUT, stream="stdout")
            asked = proc.wait_for(r"requesting a certificate", 5, stream="stderr")
            released = proc.wait_for(r"secret db version", 5, stream="stderr")
            outcome.timings["keep_start_to_workload_s"] = serving.at - proc.started
            outcome.timings["attest_to_secrets_released_s"] = released.at - asked.at
            return f"pid {proc.pid}, https://127.0.0.1:{ctx['port']}/"

        def fetch() -> str:
            expect = PeerExpectations(
                package_sha256=bytes.fromhex(ctx["digest"].removeprefix("sha256:")),
                platforms=frozenset({"sim"}),
                allow_development=True,
                allowed_advisories=frozenset({REVOCATION_NOT_CHECKED}),
            )
            request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            got = labmod.fetch(ctx["port"], ctx["steward"].ca_pem, request, expect=expect)
            outcome.timings["tls_handshake_s"] = got.connect_s
            outcome.claims = _claims(got.identity)
            outcome.claims["package_sha256"] = ctx["digest"]
            _, _, body = got.response.partition(b"\r\n\r\n")
            outcome.page = body.decode("utf-8", "replace")
            if password not in outcome.page:
                raise DemoFailed("the Keep's answer does not carry the stored secret")
            return "chain to the Steward CA, claims and package digest verified; secret served"

        def stop() -> str:
            procs = list(lab.procs)
            lab.close()
            alive = [p.name for p in procs if p.running()]
            if alive:
                raise DemoFailed(f"still running after stop: {', '.join(alive)}")
            return f"stopped {len(procs)} process(es)"

        actions = [sim, build, registry, steward, publish, store, keep, fetch, stop]
        run_steps(outcome, actions, keep_going, progress)
    return outcome


def _sim_policy(digest: str) -> dict[str, Any]:
    """Release to a Keep of this package on the simulator (development, TCB not appraised)."""
    return {
        "allowed_packages": [digest],
        "platforms": ["sim"],
        "development": True,
        "min_tcb_status": "NotAppraised",
    }
