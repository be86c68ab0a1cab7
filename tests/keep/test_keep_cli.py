"""``donjon platform info`` against a fake kernel interface, and ``donjon config init/check``."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from donjon.keep.platforms.probe import probe

SNP_CPUINFO = "processor\t: 0\nflags\t\t: fpu vme sev sev_es sev_snp hypervisor\n"
TDX_CPUINFO = "processor\t: 0\nflags\t\t: fpu vme tdx_guest hypervisor\n"
PLAIN_CPUINFO = "processor\t: 0\nflags\t\t: fpu vme sse2\n"


def fake_root(tmp_path: Path, cpuinfo: str, *paths: str) -> Path:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text(cpuinfo)
    for rel in paths:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith("sys/"):
            target.mkdir()
        else:
            target.write_text("")  # stands in for a device node
    return root


def by_name(root: Path, **kw: object) -> dict[str, object]:
    return {r.name: r for r in probe(root, system="Linux", with_providers=False, **kw)}  # type: ignore[arg-type]


def test_snp_guest_with_configfs_tsm(tmp_path: Path) -> None:
    root = fake_root(tmp_path, SNP_CPUINFO, "sys/kernel/config/tsm/report", "dev/sev-guest")
    reports = by_name(root)
    snp = reports["snp"]
    assert snp.usable  # type: ignore[attr-defined]
    assert [c.ok for c in snp.checks] == [True, True, True]  # type: ignore[attr-defined]
    assert not reports["tdx"].usable  # type: ignore[attr-defined]
    assert not reports["sgx"].usable  # type: ignore[attr-defined]


def test_tdx_guest_with_device_only(tmp_path: Path) -> None:
    reports = by_name(fake_root(tmp_path, TDX_CPUINFO, "dev/tdx_guest"))
    tdx = reports["tdx"]
    assert tdx.usable  # type: ignore[attr-defined]
    tsm = tdx.checks[0]  # type: ignore[attr-defined]
    assert (tsm.ok, tsm.text) == (False, "configfs-tsm: /sys/kernel/config/tsm/report")
    assert "mount -t configfs" in tsm.hint


def test_sgx_needs_gramine(tmp_path: Path) -> None:
    cpu = "flags\t\t: fpu sgx sgx_lc\n"
    assert not by_name(fake_root(tmp_path / "a", cpu, "dev/sgx_enclave"))["sgx"].usable  # type: ignore[attr-defined]
    assert by_name(fake_root(tmp_path / "b", cpu, "dev/attestation"))["sgx"].usable  # type: ignore[attr-defined]


def test_plain_host_has_hints_for_every_missing_piece(tmp_path: Path) -> None:
    reports = by_name(fake_root(tmp_path, PLAIN_CPUINFO))
    assert [n for n, r in reports.items() if r.usable] == ["nil"]  # type: ignore[attr-defined]
    for name in ("snp", "tdx", "sgx"):
        for check in reports[name].checks:  # type: ignore[attr-defined]
            assert not check.ok and check.hint


def test_macos_reads_cpu_flags_from_sysctl(tmp_path: Path) -> None:
    answers = {"machdep.cpu.leaf7_features": "RDWRFSGS TSC_THREAD_OFFSET SGX BMI1"}
    reports = {
        r.name: r
        for r in probe(tmp_path, system="Darwin", sysctl=answers.get, with_providers=False)
    }
    sgx = reports["sgx"]
    assert sgx.checks[0].ok  # the CPU has SGX
    assert sgx.checks[1].text == "TEE guest interfaces need Linux (this is Darwin)"
    assert not sgx.usable


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", *args],
        capture_output=True, text=True, check=False, cwd=cwd,
    )  # fmt: skip


def test_platform_info_json_on_a_fake_root(tmp_path: Path) -> None:
    root = fake_root(tmp_path, SNP_CPUINFO, "dev/sev-guest")
    proc = run_cli("platform", "info", "--json", "--root", str(root), "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [p["name"] for p in data["platforms"]] == [
        "sgx", "snp", "tdx", "cca", "nitro", "azure", "sim", "sim-cca", "nil"
    ]  # fmt: skip
    snp = data["platforms"][1]
    assert snp["checks"][1] == {
        "ok": True,
        "text": "SEV guest device: /dev/sev-guest",
        "hint": None,
    }


def test_platform_info_tree(tmp_path: Path) -> None:
    proc = run_cli("platform", "info", "--root", str(fake_root(tmp_path, PLAIN_CPUINFO)))
    assert proc.returncode == 0, proc.stderr
    assert "✔ nil: no TEE" in proc.stdout
    assert re.search(
        r"✗ SEV guest device: /dev/sev-guest  \(hint: .*modprobe sev-guest", proc.stdout
    )


def test_config_init_then_check(tmp_path: Path) -> None:
    proc = run_cli("config", "init", str(tmp_path / "app"))
    assert proc.returncode == 0, proc.stderr
    template = tmp_path / "app" / "Donjon.toml"
    assert template.is_file()
    assert stat.S_IMODE(template.stat().st_mode) == 0o644  # a config holds no secret
    again = run_cli("config", "init", str(tmp_path / "app"))
    assert again.returncode == 2
    assert again.stderr.strip().endswith("Donjon.toml: already exists (use --force to overwrite)")
    check = run_cli("config", "check", str(tmp_path / "app"), "--json")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["fd_names"] == ["stdin", "stdout", "stderr"]


def test_every_commented_option_in_the_template_is_valid(tmp_path: Path) -> None:
    from donjon.cli.keep import CONFIG_TEMPLATE

    setting = re.compile(r"^# (\[|[A-Za-z_]+ = )")
    lines = [line[2:] if setting.match(line) else line for line in CONFIG_TEMPLATE.splitlines()]
    (tmp_path / "Donjon.toml").write_text("\n".join(lines) + "\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "steward-ca.pem").write_text("")
    proc = run_cli("config", "check", str(tmp_path), "--no-bind", "--json")
    assert proc.returncode == 0, proc.stderr
    kinds = [f["kind"] for f in json.loads(proc.stdout)["config"]["files"]]
    assert kinds == ["stdin", "stdout", "stderr", "dir", "listen", "connect"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('steward = "http://x"\n', "steward: 'http://x' must be an https:// URL"),
        ("[[files]]\nkind = 'listen'\n", "missing required field 'name'"),
    ],
)
def test_config_check_reports_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "Enarx.toml").write_text(text)
    proc = run_cli("config", "check", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "example"),
    [
        (("run", "--help"), "donjon run examples/hello"),
        (("config", "check", "--help"), "donjon config check examples/hello"),
        (("config", "init", "--help"), "donjon config init myapp"),
        (("platform", "info", "--help"), "donjon platform info --json"),
    ],
)
def test_help_has_examples(args: tuple[str, ...], example: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Examples:" in proc.stdout or "Example:" in proc.stdout
    assert example in proc.stdout
