"""Deploy: registry pull + digest check vs a plain download; secret releases vs attestations.

1. A package whose main.wasm is ``--mib`` MiB of random bytes is pushed to a real
   ``docker-registry`` (TLS, htpasswd) on 127.0.0.1. Donjon's pull (manifest,
   config and layer, each size- and digest-checked in memory) is timed against
   a plain HTTPS download of the same blob with the same client library and
   credentials, no checks, alternating runs. Goal: pull >= 70% of the plain
   download's MiB/s.
2. A ``donjon steward serve --dev`` with secrets, trusting the simulated TEE:
   secret releases per second (challenge + mutual-TLS release, one Keep
   identity) against attestations per second (challenge + CSR with sim
   evidence -> certificate), one client each, same Steward. Goal: a release
   costs no more than an attestation (ratio >= 1.0).

    python bench/deploy.py [--mib 64] [--repeat 5] [--releases 200] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import REPO, Row, free_port, report, write_self_signed
from support import registry as registries
from support.net import stop, wait_port

MIB = 1024 * 1024


def pull_rows(tmp: Path, mib: int, repeat: int) -> list[Row]:
    from donjon.keep.oci import reference
    from donjon.keep.oci.auth import Credentials
    from donjon.keep.oci.fetch import fetch
    from donjon.keep.oci.publish import push
    from donjon.keep.oci.registry import Limits

    why = registries.missing()
    if why is not None:
        raise SystemExit(f"{why} (scripts/install-system-deps installs it)")
    reg = registries.start(tmp / "registry")
    try:
        creds = Credentials(registries.USERNAME, registries.PASSWORD, "bench")
        pkg = tmp / "pkg"
        pkg.mkdir()
        (pkg / "main.wasm").write_bytes(os.urandom(mib * MIB))
        ref = reference.parse(reg.ref("bench/pull"))
        pushed = push(pkg, ref, credentials=creds, ca_bundle=reg.ca)
        layer = "sha256:" + pushed.wasm_sha256
        limits = Limits(max_layer=(mib + 1) * MIB)
        context = ssl.create_default_context(cafile=str(reg.ca))
        url = f"https://{reg.host}/v2/bench/pull/blobs/{layer}"
        checked: list[float] = []
        plain: list[float] = []
        for _ in range(repeat):
            started = time.perf_counter()
            blobs = fetch(pushed.reference, credentials=creds, ca_bundle=reg.ca, limits=limits)
            checked.append(time.perf_counter() - started)
            assert len(blobs.wasm_layer) == mib * MIB
            started = time.perf_counter()
            with httpx.Client(verify=context, auth=(registries.USERNAME, registries.PASSWORD)) as c:
                size = 0
                with c.stream("GET", url, follow_redirects=True) as response:
                    for chunk in response.iter_bytes(MIB):
                        size += len(chunk)
            plain.append(time.perf_counter() - started)
            assert size == mib * MIB
        ours = mib / statistics.median(checked)
        base = mib / statistics.median(plain)
        return [
            Row("registry pull + digest checks", "MiB/s", ours, base, ">= 0.70", ours >= 0.7 * base)
        ]
    finally:
        reg.stop()


def release_rows(tmp: Path, releases: int) -> list[Row]:
    from donjon.attestation.claims import WorkloadClaims
    from donjon.keep import identity as ident
    from donjon.keep import platforms
    from donjon.keep.identity import Identity
    from donjon.keep.secret_client import SecretClient
    from donjon.keep.steward_client import StewardClient
    from donjon.steward.secrets_admin import SecretsAdmin

    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    donjon = [sys.executable, "-m", "donjon.cli.main"]
    sim = tmp / "sim"
    subprocess.run([*donjon, "sim", "init", "--state-dir", str(sim)], check=True, env=env,
                   capture_output=True)  # fmt: skip
    cert, key = write_self_signed(tmp, cert_name="https.pem", key_name="https.key")
    (tmp / "dev.toml").write_text(f'[sim]\ntrust = "{sim / "sim" / "ark.pem"}"\n')
    token = "bench-admin-token-0123456789"
    (tmp / "admin.token").write_text(token)
    (tmp / "admin.token").chmod(0o600)
    (tmp / "kek").write_text(os.urandom(32).hex())
    (tmp / "kek").chmod(0o600)
    port = free_port()
    proc = subprocess.Popen(
        [*donjon, "steward", "serve", "--dev", "--init", "--dir", str(tmp / "state"),
         "--port", str(port), "--policy", str(tmp / "dev.toml"), "--tls-cert", str(cert),
         "--tls-key", str(key), "--admin-token-file", str(tmp / "admin.token"),
         "--secrets-kek-file", str(tmp / "kek"), "--log-level", "error"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        url = f"https://localhost:{port}"
        package = hashlib.sha256(b"bench package").digest()
        SecretsAdmin(url, token, cert).put(
            "bench-db",
            b"bench password",
            {"allowed_packages": [package.hex()], "platforms": ["sim"], "development": True,
             "min_tcb_status": "NotAppraised"},
        )  # fmt: skip
        platform = platforms.select("sim", sim)
        client = StewardClient(url + "/", cert)

        def attest() -> Identity:
            claims = WorkloadClaims(
                hashlib.sha256(b"w").digest(), b"", "bench", client.challenge(), package
            )
            private = ident.generate_key(platform)
            chain = client.request(ident.build_csr(private, claims, platform))
            return Identity(private, tuple(reversed(chain[1:])), chain[0], "sim", claims)

        attestations = max(20, releases // 5)
        started = time.perf_counter()
        for _ in range(attestations):
            keep = attest()
        attest_rate = attestations / (time.perf_counter() - started)
        with SecretClient(url, cert, keep) as secrets:
            secrets.fetch("bench-db")  # the mutual-TLS connection, once
            started = time.perf_counter()
            for _ in range(releases):
                secrets.fetch("bench-db")
            release_rate = releases / (time.perf_counter() - started)
        return [
            Row("secret releases vs attestations", "/s", release_rate, attest_rate, ">= 1.0",
                release_rate >= attest_rate)
        ]  # fmt: skip
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="main.wasm size in MiB")
    parser.add_argument("--repeat", type=int, default=5, help="pulls per side")
    parser.add_argument("--releases", type=int, default=200, help="secret releases timed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="donjon-bench-deploy-") as tmp:
        rows = pull_rows(Path(tmp), args.mib, args.repeat)
        rows += release_rows(Path(tmp), args.releases)
    report(
        "deploy: registry pull and secret release",
        rows,
        args.json,
        notes=[
            f"pull: {args.mib} MiB layer, median of {args.repeat}; baseline: the same blob "
            "over HTTPS with httpx, no checks",
            "releases: challenge + POST /v1/secrets over one mutual-TLS connection; "
            "attestations: challenge + sim evidence + CSR -> certificate",
        ],
    )


if __name__ == "__main__":
    main()
