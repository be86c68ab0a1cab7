"""``donjon demo``: the whole attested flow on this machine, step by step, with timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import hashes

from donjon.cli.output import mark, print_json
from donjon.errors import DonjonError

HTTP_EXAMPLE = Path("examples") / "http" / "main.c"
KEEP_TIMEOUT = 120.0  # seconds for the Keep to attest and start (compiling wasm included)


class DemoFailed(DonjonError):
    """At least one step of the demo failed."""


@dataclass
class Step:
    name: str
    ok: bool | None = None  # None: not run
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Outcome:
    steps: list[Step] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    page: str = ""

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "steps": [
                {"name": s.name, "ok": s.ok, "seconds": round(s.seconds, 4), "detail": s.detail}
                for s in self.steps
            ],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "claims": self.claims,
            "page": self.page,
        }


def find_example(explicit: Path | None) -> Path:
    """The HTTP example's source: ``--example``, else the checkout this Donjon runs from."""
    if explicit is not None:
        candidate = explicit / "main.c" if explicit.is_dir() else explicit
        if not candidate.is_file():
            raise DemoFailed(f"{explicit}: no main.c or .wasm file there")
        return candidate
    import donjon

    checkout = Path(donjon.__file__).resolve().parents[2]
    candidate = checkout / HTTP_EXAMPLE
    if not candidate.is_file():
        raise DemoFailed(
            f"{HTTP_EXAMPLE} not found next to this Donjon ({checkout}): "
            "run from a source checkout, or pass --example DIR"
        )
    return candidate


def http_config(lab_config: str, port: int) -> str:
    return lab_config + (
        '\n[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'
        f'[[files]]\nname = "http"\nkind = "listen"\naddr = "127.0.0.1"\nport = {port}\n'
        'prot = "tls"\n'
    )


def run_demo(
    *,
    example: Path | None,
    keep_going: bool,
    progress: Callable[[str], None],
    keep_files: bool = False,
    tee: str = "snp",
) -> Outcome:
    """Run every step; each failure is recorded, and stops the run unless ``keep_going``.

    ``tee`` is the simulated TEE whose evidence format the flow runs on: ``snp`` (SEV-SNP
    reports) or ``cca`` (Arm CCA tokens, through the Steward's real CCA verifier).
    """
    from donjon.attestation.claims import REVOCATION_NOT_CHECKED
    from donjon.attestation.peer import PeerExpectations
    from donjon.keep.sim import lab as labmod

    outcome = Outcome()
    label = {"tdx": "Intel TDX", "cca": "Arm CCA"}.get(tee, "AMD SEV-SNP")
    names = [
        f"initialise the simulated TEE ({label})",
        "build the HTTP workload",
        "start a Steward (HTTPS, policy trusts sim)",
        "start the Keep (attest, get a certificate, serve)",
        "fetch the page as a relying party",
        "stop everything",
    ]
    outcome.steps = [Step(name) for name in names]
    ctx: dict[str, Any] = {}

    with labmod.Lab(keep_root=keep_files) as lab, labmod.interrupt_on_sigterm():

        def sim() -> str:
            if tee == "cca":
                cca = lab.init_sim_cca()
                impl = cca.config.implementation_id.hex()
                return f"Arm CCA, implementation {impl[:16]}..., CPAK {cca.cpak_pem.name}"
            if tee == "tdx":
                tdx = lab.init_sim_tdx()
                root = tdx.hierarchy.root.cert.fingerprint(hashes.SHA256()).hex()
                return (
                    f"TDX, FMSPC {tdx.config.fmspc.hex()}, TEE_TCB_SVN "
                    f"{tdx.config.tee_tcb_svn.hex()}, root sha256 {root[:16]}..."
                )
            state = lab.init_sim()
            ark = state.ark.fingerprint(hashes.SHA256()).hex()
            return f"{state.config.product.value}, TCB {state.config.tcb}, ARK sha256 {ark[:16]}..."

        def build() -> str:
            from donjon import toolchain

            source = find_example(example)
            wasm = source if source.suffix == ".wasm" else toolchain.build(source)
            ctx["wasm"] = wasm
            ctx["digest"] = labmod.sha256_file(wasm)
            return f"{source} -> main.wasm sha256 {ctx['digest'].hex()}"

        def steward() -> str:
            policy = lab.write_policy([ctx.get("digest", bytes(32))], tee=tee)
            ctx["steward"] = lab.start_steward(policy)
            trusts = {"cca": "[sim] cca_cpak", "tdx": "[sim.tdx] trust"}.get(tee, "[sim] trust")
            return f"{ctx['steward'].url}, policy {policy.name}: {trusts} + allowed_workloads"

        def keep() -> str:
            port = labmod.free_port()
            target = ctx.get("steward") or "https://127.0.0.1:9"  # nothing listens on 9
            config = http_config(lab.steward_config(target), port)
            package = lab.write_package("http", ctx["wasm"], config)
            proc = lab.start_keep(package, platform="sim-cca" if tee == "cca" else "sim")
            ctx["keep"], ctx["port"] = proc, port
            serving = proc.wait_for(r"serving on fd", KEEP_TIMEOUT, stream="stdout")
            challenged = proc.wait_for(r"for a challenge", 5, stream="stderr")
            asked = proc.wait_for(r"requesting a certificate", 5, stream="stderr")
            got = proc.wait_for(r".", 5, stream="stderr", after=asked)  # the Keep's next line
            outcome.timings["keep_start_to_workload_s"] = serving.at - proc.started
            outcome.timings["keep_start_to_certificate_s"] = got.at - proc.started
            outcome.timings["attestation_round_trip_s"] = got.at - challenged.at
            return (
                f"pid {proc.pid}, https://127.0.0.1:{port}/ ({got.text.removeprefix('donjon: ')})"
            )

        def fetch() -> str:
            # Said explicitly: a sim certificate always carries this advisory (a simulated
            # vendor publishes no CRL); a relying party refuses any advisory it did not allow.
            expect = PeerExpectations(
                workload_sha256=ctx["digest"],
                platforms=frozenset({"sim"}),
                allow_development=True,
                allowed_advisories=frozenset({REVOCATION_NOT_CHECKED}),
            )
            request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            got = labmod.fetch(ctx["port"], ctx["steward"].ca_pem, request, expect=expect)
            outcome.timings["tls_handshake_s"] = got.connect_s
            outcome.timings["first_tls_response_s"] = got.first_byte_s
            outcome.claims = _claims(got.identity)
            head, _, body = got.response.partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0].decode("latin-1")
            outcome.page = body.decode("utf-8", "replace")
            if not status.startswith("HTTP/1.1 200"):
                raise DemoFailed(f"the Keep answered {status!r}")
            allowed = (
                "simulated TDX: CRLs and TCB Info checked"
                if tee == "tdx"
                else f"allowed advisory: {REVOCATION_NOT_CHECKED}, simulated TEE"
            )
            return (
                f"{got.tls_version}, {status}, {len(body)} bytes, chain and claims verified "
                f"({allowed})"
            )

        def stop() -> str:
            procs = list(lab.procs)
            lab.close()
            alive = [p.name for p in procs if p.running()]
            if alive:
                raise DemoFailed(f"still running after stop: {', '.join(alive)}")
            files = f"kept {lab.root}" if keep_files else f"removed {lab.root}"
            return f"stopped {len(procs)} process(es), {files}"

        run_steps(outcome, [sim, build, steward, keep, fetch, stop], keep_going, progress)
    return outcome


def run_steps(
    outcome: Outcome,
    actions: list[Callable[[], str]],
    keep_going: bool,
    progress: Callable[[str], None],
) -> None:
    """Run each step, timed; after a failure only the last (the cleanup) runs, unless
    ``keep_going``."""
    failed = False
    for index, (step, action) in enumerate(zip(outcome.steps, actions, strict=True)):
        if failed and not keep_going and index != len(actions) - 1:
            continue
        progress(f"[{index + 1}/{len(actions)}] {step.name} ...")
        started = time.monotonic()
        try:
            step.detail = action()
            step.ok = True
        except Exception as exc:  # a step's failure is reported, and cleanup still runs
            step.ok, failed = False, True
            step.detail = _reason(exc)
        step.seconds = time.monotonic() - started


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DonjonError):
        return exc.message
    if isinstance(exc, KeyError):
        return f"needs the result of an earlier step ({exc.args[0]})"
    if isinstance(exc, OSError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _claims(identity: Any) -> dict[str, Any]:
    r = identity.result
    w = identity.workload
    return {
        "serial": identity.serial_hex,
        "not_after": identity.certificate.not_valid_after_utc.isoformat(),
        "platform": r.platform,
        "product": r.product,
        "development": r.development,
        "debug": r.debug,
        "measurement": r.measurement.hex(),
        "tcb": r.tcb,
        "tcb_status": r.tcb_status,
        "advisories": ", ".join(r.advisories) or "none",
        "policy_id": r.policy_id,
        "workload_sha256": w.wasm_sha256.hex() if w else None,
        "package": w.package_name if w else None,
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for scripts.")
@click.option(
    "--keep-going", is_flag=True, help="Run every step even after one fails (to see them all)."
)
@click.option(
    "--example",
    type=click.Path(exists=True, path_type=Path),
    help="The HTTP example (a directory with main.c, or a .wasm) [default: examples/http].",
)
@click.option("--keep-files", is_flag=True, help="Leave the lab directory for inspection.")
@click.option(
    "--tee",
    type=click.Choice(["snp", "tdx", "cca"]),
    default="snp",
    show_default=True,
    help="The simulated TEE: AMD SEV-SNP reports, Intel TDX quotes with their collateral, or "
    "Arm CCA tokens, each in its real layout.",
)
@click.option(
    "--deploy",
    is_flag=True,
    help="Deploy a confidential package from an OCI registry, with a secret (docs/secrets.md).",
)
def demo(
    as_json: bool,
    keep_going: bool,
    example: Path | None,
    keep_files: bool,
    tee: str,
    deploy: bool,
) -> None:
    """Run the whole attested flow on this machine, with the simulated TEE.

    \b
    1. initialise a simulated AMD SEV-SNP (or, --tee tdx, Intel TDX) vendor
       hierarchy (in a temp dir)
    2. build examples/http to main.wasm
    3. start a Steward on https://127.0.0.1 whose policy trusts the sim ARK
       and allows exactly that main.wasm
    4. run the workload in a Keep: it attests, gets a certificate, serves TLS
    5. fetch the page as a relying party: check the chain to the Steward CA
       and the attested claims (platform, workload digest), then GET /
    6. stop every process, even on Ctrl-C

    Prints each step with its time, the certificate's claims and the page;
    exits non-zero if any step failed.

    \b
    Examples:
      donjon demo
      donjon demo --tee tdx
      donjon demo --json | jq .timings
      donjon demo --keep-going --keep-files
      donjon demo --tee cca                  the same flow on Arm CCA tokens
      donjon demo --deploy       a sealed package from a registry, a secret after attestation
    """

    def progress(text: str) -> None:
        if not as_json:
            click.echo(click.style(text, dim=True), err=True)

    if deploy:
        from donjon.cli.demo_deploy import run_deploy_demo

        outcome = run_deploy_demo(keep_going=keep_going, progress=progress, keep_files=keep_files)
    else:
        outcome = run_demo(
            example=example,
            keep_going=keep_going,
            progress=progress,
            keep_files=keep_files,
            tee=tee,
        )
    if as_json:
        print_json(outcome.to_json())
    else:
        _print(outcome)
    if not outcome.ok:
        first = next(s for s in outcome.steps if s.ok is False)
        raise DemoFailed(f"demo failed at '{first.name}': {first.detail}")


def _print(outcome: Outcome) -> None:
    for step in outcome.steps:
        if step.ok is None:
            click.echo(f"- {step.name}: skipped")
            continue
        click.echo(f"{mark(step.ok)} {step.name} ({step.seconds:.2f} s): {step.detail}")
    if outcome.claims:
        click.echo("\nattested claims in the Keep's certificate:")
        for key, value in outcome.claims.items():
            click.echo(f"  {key:16} {value}")
    if outcome.page:
        click.echo("\npage served by the Keep:")
        click.echo("  " + outcome.page.strip().replace("\n", "\n  "))
    if outcome.timings:
        labels = {
            "keep_start_to_workload_s": "Keep start -> workload running (first output)",
            "keep_start_to_certificate_s": "Keep start -> certificate in hand",
            "attestation_round_trip_s": "attestation round trip (challenge -> CSR -> certificate)",
            "tls_handshake_s": "TLS connect + handshake",
            "first_tls_response_s": "first TLS response (connect -> first byte)",
            "attest_to_secrets_released_s": "CSR sent -> key and secret released",
        }
        click.echo("\ntimings:")
        for key, seconds in outcome.timings.items():
            click.echo(f"  {labels.get(key, key):58} {seconds * 1000:9.1f} ms")
