"""The console in a real browser (Debian's chromium through Playwright), against a real
Steward process and a real Keep on the simulated TEE.

One Steward and one Keep serve the whole module (starting them is most of its time);
the tests run in file order and the revocation comes last. Every page is screenshot at
1280 and 390 px into the artifacts directory (support/browser.py); no request may leave
127.0.0.1.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from donjon.attestation import TrustStore, load_policy, verify_csr
from donjon.attestation.peer import PeerExpectations, PeerRevokedError
from donjon.keep.sim.lab import Lab, Steward, fetch, free_port
from donjon.steward.console.render import CSP
from donjon.steward.secrets_policy import ReleasePolicy
from donjon.steward.secrets_release import SecretService
from donjon.steward.secrets_store import SecretStore
from donjon.steward.secrets_vault import parse_kek
from donjon.steward.store import AuditStore, Rejection
from support.browser import LocalOnly, chromium, screenshot

# One browser and one Steward for the module, its tests in order (the last counts what
# all of them fetched): under pytest-xdist, the module stays in one worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("console-browser")]

REPO = Path(__file__).resolve().parents[2]
ADMIN = "console-admin-token-0123"
AUDIT = "console-audit-token-0123"
GET = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'
SNP_CSR = "enarx-steward/snp_milan.signed.crl.csr"
HOSTILE_REASON = "<b>bold</b>"
KEK = "0f" * 32
SECRET_VALUE = b"correct-horse-battery-staple-0451"
HOSTILE = "<script>window.pwned=1;alert(1)</script>\n<img src=x onerror=alert(2)>\n" + "Z" * 10_000


@dataclass
class World:
    lab: Lab
    steward: Steward
    wasm_sha256: bytes
    keep_port: int
    serial: str
    policy: Path
    https: ssl.SSLContext

    @property
    def console(self) -> str:
        return f"{self.steward.url}/console"

    def expect(self) -> PeerExpectations:
        return PeerExpectations(
            workload_sha256=self.wasm_sha256, platforms=frozenset({"sim"}), allow_development=True
        )


def attest(url: str, body: bytes, https: ssl.SSLContext) -> httpx.Response:
    headers = {"Content-Type": "application/pkcs10"}
    return httpx.post(f"{url}/v1/attest", content=body, headers=headers, verify=https)


def crl_of(world: World) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(
        httpx.get(f"{world.steward.url}/v1/crl", verify=world.https).content
    )


def _token(path: Path, token: str) -> str:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="module")
def world(build_wasm: Callable[[Path], Path], vectors: Path) -> Iterator[World]:
    wasm = build_wasm(REPO / "examples" / "http" / "main.c")
    digest = hashlib.sha256(wasm.read_bytes()).digest()
    with Lab() as lab:
        lab.init_sim()
        # The sim Keep's workload, and Enarx's own [snp] pins for the shared SNP vector.
        enarx = (vectors / "enarx-steward" / "steward_testdata_policy.toml").read_text()
        policy = lab.write_policy([digest], extra=enarx)
        steward = lab.start_steward(
            policy,
            extra=[
                "--admin-token-file", _token(lab.root / "admin.token", ADMIN),
                "--audit-token-file", _token(lab.root / "audit.token", AUDIT),
                "--console", "on", "--trust-dir", str(vectors),
                "--secrets-kek-file", _token(lab.root / "kek", KEK),
            ],
        )  # fmt: skip
        port = free_port()
        listen = (
            f'[[files]]\nname = "http"\nkind = "listen"\naddr = "127.0.0.1"\nport = {port}\n'
            'prot = "tls"\n'
        )
        package = lab.write_package("http", wasm, lab.steward_config(steward) + STDIO + listen)
        lab.start_keep(package).wait_for(r"serving on fd", 120, stream="stdout")
        assert lab.https_ca is not None
        https = ssl.create_default_context(cafile=str(lab.https_ca))
        world = World(lab, steward, digest, port, "", policy, https)
        first = fetch(port, steward.ca_pem, GET, expect=world.expect())
        assert first.response.startswith(b"HTTP/1.1 200")
        world.serial = first.identity.serial_hex
        # Refusals for the overview: malformed CSRs, and one hostile row written as a
        # compromised store client could (the Steward's own writer bounds its quotes).
        for _ in range(3):
            assert attest(steward.url, b"\x30\x03\x02\x01\x00", https).status_code == 400
        store = AuditStore.open(f"sqlite:///{steward.directory / 'audit.db'}")
        try:
            store.record_rejection(
                Rejection(datetime.now(UTC), HOSTILE_REASON, 403, "sim", "ab" * 32, HOSTILE)
            )
            # A secret for this Keep's workload, stored as `donjon steward secrets put` does.
            secrets = SecretService(store=SecretStore(store.engine), kek=parse_kek(KEK, "kek"),
                                    ca=None, audit=store, clock=lambda: datetime.now(UTC))  # type: ignore[arg-type]  # fmt: skip
            policy = ReleasePolicy(allowed_workloads=[digest.hex()], development=True)
            secrets.put("db-password", SECRET_VALUE, policy, create=True)
        finally:
            store.close()
        yield world


@pytest.fixture(scope="module")
def guard() -> LocalOnly:
    return LocalOnly()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, guard: LocalOnly) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium") / "profile", guard) as context:
        yield context


@pytest.fixture
def page(browser: Any, world: World) -> Iterator[Any]:
    browser.clear_cookies()
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield page
    page.close()
    assert dialogs == [], f"a page opened a dialog: {dialogs}"  # no script ever ran from data


def sign_in(page: Any, world: World, token: str, target: str = "") -> None:
    page.goto(world.console + target)
    assert "/console/signin" in page.url
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "/console/signin" not in page.url


# --- the tests, in order ------------------------------------------------------------------


def test_sign_in_with_each_token_and_a_wrong_one(page: Any, world: World) -> None:
    page.goto(world.console)
    assert page.url.startswith(world.console + "/signin?next=")
    screenshot(page, "signin")
    page.get_by_label("Token").fill("not-the-token-at-all")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "That token is not this Steward's."
    for token, role in ((AUDIT, "audit"), (ADMIN, "admin")):
        page.context.clear_cookies()
        sign_in(page, world, token)
        assert page.locator(".role").inner_text() == f"{role} session"
        assert page.get_by_role("heading", level=1).inner_text() == "Overview"
    cookie = next(c for c in page.context.cookies() if c["name"].startswith("__Host-"))
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")


def test_the_keeps_certificate_is_listed_and_its_page_shows_its_checks(
    page: Any, world: World
) -> None:
    sign_in(page, world, ADMIN, "/certificates")
    link = page.get_by_role("link", name=world.serial[:12])
    assert link.count() == 1
    row = page.locator("tr", has=link)
    assert "sim" in row.inner_text() and "active" in row.inner_text()
    screenshot(page, "certificates")
    page.get_by_label("Serial or digest").fill("workload:" + world.wasm_sha256.hex())
    page.get_by_role("button", name="Search").click()
    assert page.get_by_role("link", name=world.serial[:12]).count() == 1
    link = page.get_by_role("link", name=world.serial[:12])
    link.click()
    assert page.get_by_role("heading", level=1).inner_text() == f"Certificate {world.serial}"
    checks = page.locator("ol.checks li")
    ids = [c.strip() for c in page.locator("ol.checks code.id").all_inner_texts()]
    assert checks.count() >= 10
    assert {"csr.signature", "binding.report_data", "policy.workload"} <= set(ids)
    assert page.locator("ol.checks li.fail").count() == 0
    assert page.locator("ol.checks li.pass .mark").first.inner_text() == "✔"
    # The simulator has no CRL: its revocation check is shown as not checked, in the list.
    skipped = page.locator("ol.checks li.skip")
    assert skipped.count() == 1 and skipped.locator(".mark").inner_text() == "–"
    box, listed = skipped.bounding_box(), page.locator("ol.checks").bounding_box()
    assert box is not None and listed is not None and box["y"] > listed["y"]
    assert world.wasm_sha256.hex() in page.locator("#workload-h + dl").inner_text()
    assert page.get_by_role("button", name="Revoke…").count() == 1
    screenshot(page, "certificate")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PEM").click()
    pem = Path(download.value.path()).read_bytes()
    assert format(x509.load_pem_x509_certificate(pem).serial_number, "x") == world.serial


def test_the_overview_counts_charts_and_warns(page: Any, world: World) -> None:
    sign_in(page, world, AUDIT)
    response = page.goto(world.console + "?range=hour")
    assert response.headers["content-security-policy"] == CSP
    numbers = page.locator(".stat .num").all_inner_texts()
    assert numbers == ["1", "4", "0"]  # one Keep, three malformed CSRs and the hostile row
    chart = page.locator("svg.chart").first
    assert "issued 1" in chart.get_attribute("aria-label")
    assert page.locator("svg.chart rect.bar-issued").count() == 12  # 5-minute bars, one hour
    assert "not fit for production" in page.locator(".banner").inner_text()
    assert "the policy accepts non-TEE evidence: sim" in page.locator(".warnings").inner_text()
    screenshot(page, "overview")


def test_the_overview_refreshes_itself(page: Any, world: World) -> None:
    page.clock.install()
    sign_in(page, world, AUDIT)
    before = page.locator(".stat .num").nth(1).inner_text()
    assert attest(world.steward.url, b"\x30\x00", world.https).status_code == 400
    page.clock.run_for(31_000)
    after = page.locator(".stat .num").nth(1)
    page.wait_for_function(
        "(before) => document.querySelectorAll('.stat .num')[1].textContent !== before", arg=before
    )
    assert int(after.inner_text()) == int(before) + 1


def test_a_hostile_refusal_renders_escaped_and_cut(page: Any, world: World) -> None:
    sign_in(page, world, AUDIT, "/refusals")
    page.get_by_label("Check").fill(HOSTILE_REASON)
    page.get_by_role("button", name="Filter").click()
    cell = page.locator("td.detail")
    assert cell.count() == 1
    text = cell.inner_text()
    assert text.startswith("<script>window.pwned=1;alert(1)</script>\\n<img src=x")
    assert "\n" not in text and len(text) < 300 and text.endswith("chars)")
    assert page.locator("td code", has_text=HOSTILE_REASON).count() == 1
    assert page.locator("main b, main img, main script").count() == 0
    assert page.evaluate("window.pwned") is None
    assert page.locator("script").count() == 1  # console.js, nothing else
    page.goto(world.console + "/refusals")
    screenshot(page, "refusals")


def test_the_policy_page_shows_pins_and_opt_ins(page: Any, world: World) -> None:
    sign_in(page, world, AUDIT, "/policy")
    snp = page.locator("section", has=page.get_by_role("heading", name="[snp]"))
    assert "ff717ae7" in snp.inner_text()  # Enarx's pinned measurement
    sim = page.locator("section", has=page.get_by_role("heading", name="[sim]"))
    assert world.wasm_sha256.hex() in sim.inner_text() and "development" in sim.inner_text()
    assert "This is the first policy this store has seen." in page.inner_text("main")
    screenshot(page, "policy")


def test_the_secrets_page_shows_versions_and_policy_never_the_value(
    page: Any, world: World
) -> None:
    sign_in(page, world, AUDIT)
    page.get_by_role("link", name="Secrets").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Secrets"
    page.get_by_role("link", name="db-password").click()
    assert page.get_by_role("heading", level=2, name="Version 1").count() == 1
    assert world.wasm_sha256.hex() in page.inner_text("main")
    assert SECRET_VALUE.decode() not in page.content()
    screenshot(page, "secret")


def test_uploading_the_shared_snp_vector_shows_every_check(
    page: Any, world: World, vectors: Path, expected: dict[str, Any]
) -> None:
    vector = next(v for v in expected["vectors"] if v["id"] == "snp-milan-v2-steward-csr")
    at = datetime(2023, 2, 1, tzinfo=UTC)  # expected.json's verify_at for this vector
    engine = verify_csr(
        (vectors / SNP_CSR).read_bytes(),
        policy=load_policy(world.policy),
        trust=TrustStore.offline(vectors),
        now=at,
    )
    sign_in(page, world, AUDIT, "/verify")
    assert "Nothing you upload is stored" in page.inner_text("main")
    page.get_by_label("Evidence file").set_input_files(str(vectors / SNP_CSR))
    page.get_by_label("Evaluate at (optional, ISO 8601, UTC)").fill("2023-02-01T00:00Z")
    page.get_by_role("button", name="Verify").click()
    assert page.locator(".badge.big").inner_text() == "ACCEPTED"
    shown = [c.strip() for c in page.locator("ol.checks code.id").all_inner_texts()]
    # The engine's checks, in its order, then what issuance looks up (key, challenge).
    assert shown == [c.id for c in engine.checks] + ["revoked.key", "freshness.challenge"]
    assert len(shown) >= 30
    assert page.locator("ol.checks li.fail").count() == 0
    facts = page.locator("dl.facts").first.inner_text()
    assert vector["computed"]["report"]["measurement"] in facts
    page.get_by_text("Decoded evidence").click()
    assert vector["computed"]["report"]["chip_id"] in page.locator("details table").inner_text()
    screenshot(page, "verify")


def test_a_dropped_file_fills_the_upload(page: Any, world: World) -> None:
    sign_in(page, world, AUDIT, "/verify")
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array([1, 2, 3])], "dropped.bin"));
            const zone = document.querySelector("[data-dropzone]");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }"""
    )
    assert page.locator("#evidence").evaluate("i => i.files[0].name") == "dropped.bin"
    page.get_by_role("button", name="Verify").click()
    assert "not a Keep CSR or any known evidence" in page.get_by_role("alert").inner_text()


def test_an_audit_session_sees_no_revoke_button_and_a_forged_post_gets_403(
    page: Any, world: World
) -> None:
    sign_in(page, world, AUDIT, f"/certificates/{world.serial}")
    assert page.get_by_role("heading", level=1).inner_text() == f"Certificate {world.serial}"
    assert page.get_by_role("button", name=re.compile("Revoke")).count() == 0
    assert page.locator("form[action$='/revoke']").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    url = f"{world.console}/certificates/{world.serial}/revoke"
    form = {"reason": "key-compromise", "confirm": "yes"}
    for fields in (form, form | {"csrf": csrf}):
        forged = page.request.post(url, form=fields)
        assert forged.status == 403
    # An admin session's POST without its CSRF token is refused as well.
    page.context.clear_cookies()
    sign_in(page, world, ADMIN)
    assert page.request.post(url, form=form).status == 403
    assert crl_of(world).get_revoked_certificate_by_serial_number(int(world.serial, 16)) is None


def test_pages_have_ordered_headings_labels_and_work_from_the_keyboard(
    page: Any, world: World
) -> None:
    page.goto(world.console)
    assert page.evaluate("document.activeElement.id") == "token"  # ready to type
    page.keyboard.type(AUDIT)
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert page.locator(".role").inner_text() == "audit session"
    for path in ("", "/certificates", f"/certificates/{world.serial}", "/refusals", "/policy",
                 "/secrets", "/secrets/db-password", "/verify"):  # fmt: skip
        page.goto(world.console + path)
        levels = page.evaluate(
            "[...document.querySelectorAll('h1,h2,h3,h4')].map(h => Number(h.tagName[1]))"
        )
        assert levels.count(1) == 1 and levels[0] == 1, path
        assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), (path, levels)
        unlabelled = page.evaluate(
            """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
               .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))
               .map(e => e.name)"""
        )
        assert unlabelled == [], path
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content", path
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main", path


def test_revoke_from_the_page_then_the_crl_lists_it_and_a_client_refuses_the_keep(
    page: Any, world: World
) -> None:
    sign_in(page, world, ADMIN, f"/certificates/{world.serial}")
    page.get_by_label("Reason").select_option("key-compromise")
    page.get_by_role("button", name="Revoke…").click()
    heading = page.get_by_role("heading", level=1).inner_text()
    assert heading == f"Revoke certificate {world.serial}?"
    screenshot(page, "revoke-confirm")
    page.get_by_role("button", name="Yes, revoke it").click()
    assert page.get_by_role("status").inner_text().startswith("Revoked.")
    assert page.locator(".badge.big").inner_text() == "revoked"
    crl = crl_of(world)
    entry = crl.get_revoked_certificate_by_serial_number(int(world.serial, 16))
    assert entry is not None
    with pytest.raises(PeerRevokedError):
        fetch(world.keep_port, world.steward.ca_pem, GET, expect=world.expect(), crl=crl)
    page.goto(world.console + "/certificates?status=revoked")
    assert page.get_by_role("link", name=world.serial[:12]).count() == 1


def test_no_request_left_127_0_0_1(page: Any, world: World, guard: LocalOnly) -> None:
    assert guard.blocked == []
    assert len(guard.seen) > 50 and all("127.0.0.1" in url for url in guard.seen)
    with pytest.raises(Exception, match="ERR_BLOCKED_BY_CLIENT"):
        page.goto("https://example.invalid/")  # the guard itself works
    assert guard.blocked == ["https://example.invalid/"]
    guard.blocked.clear()
