"""`make audit`: known vulnerabilities in the locked dependencies, and no secrets in the repository.

Vulnerabilities: every package pinned in `uv.lock` (`uv export --frozen`) is checked with
`pip-audit` against PyPI's vulnerability data. Where PyPI's per-release JSON is not reachable
(pip-audit then *skips* the package and would say "No known vulnerabilities found" about packages it
never checked), the package's project JSON is used instead: it lists the vulnerabilities of the
latest release, which is exact when the locked version *is* the latest, and a partial check when
it is older (those packages are listed as "partially checked: outdated"; `AUDIT_STRICT=1` turns
that into a failure). Any finding fails the audit unless `audit/allowlist.toml` names its id with a
reason (only for findings that have no fixed version).

Secrets: `audit/secrets_scan.py` greps every tracked (and not ignored, untracked) file.

    uv run python audit/audit.py                   # both checks
    uv run python audit/audit.py --requirements r.txt   # audit another pinned list
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ALLOWLIST = Path(os.environ.get("PENGUIN12_AUDIT_ALLOWLIST", ROOT / "audit" / "allowlist.toml"))
PYPI = os.environ.get("PENGUIN12_AUDIT_PYPI", "https://pypi.org/pypi")


@dataclass
class Finding:
    package: str
    version: str
    id: str
    aliases: list[str]
    fix_versions: list[str]
    source: str  # "pip-audit" or "pypi-project-json"
    summary: str = ""

    def ids(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass
class Report:
    packages: dict[str, str]
    findings: list[Finding] = field(default_factory=list)
    exact: set[str] = field(default_factory=set)
    partial: dict[str, str] = field(default_factory=dict)  # package -> latest version
    unchecked: dict[str, str] = field(default_factory=dict)  # package -> why


def export_lock() -> str:
    uv = os.environ.get("UV") or shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    result = subprocess.run(
        [
            uv,
            "export",
            "--frozen",
            "--no-hashes",
            "--format",
            "requirements-txt",
            "--all-packages",
            "--all-groups",
            "--no-emit-workspace",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise SystemExit(f"uv export failed: {result.stderr}")
    return result.stdout


def parse_pins(requirements: str) -> dict[str, str]:
    pins = {}
    for line in requirements.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if match:
            pins[_norm(match.group(1))] = match.group(2)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run_pip_audit(requirements: str, report: Report) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write(requirements)
        path = handle.name
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip_audit",
                "-r",
                path,
                "--no-deps",
                "--disable-pip",
                "--vulnerability-service",
                "pypi",
                "--progress-spinner",
                "off",
                "--format",
                "json",
                "--timeout",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        os.unlink(path)
    try:
        data = json.loads(result.stdout or "{}")
    except ValueError:
        data = {}
    if not data.get("dependencies"):
        print(f"pip-audit produced no report (exit {result.returncode}): {result.stderr[-500:]}")
        return
    for dep in data["dependencies"]:
        name, version = _norm(dep["name"]), dep.get("version", "")
        if dep.get("skip_reason"):
            report.unchecked[name] = dep["skip_reason"]
            continue
        report.exact.add(name)
        for vuln in dep.get("vulns", []):
            report.findings.append(
                Finding(
                    name,
                    version,
                    vuln["id"],
                    vuln.get("aliases", []),
                    vuln.get("fix_versions", []),
                    "pip-audit",
                    (vuln.get("description") or "")[:200],
                )
            )


def project_json(name: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{PYPI}/{name}/json", timeout=30) as response:
        data: dict[str, Any] = json.load(response)
        return data


def check_with_project_json(report: Report) -> None:
    """For packages pip-audit skipped: the vulnerabilities PyPI lists for the latest release."""
    todo = {name: report.packages[name] for name in list(report.unchecked)}

    def one(name: str) -> tuple[str, dict[str, Any] | None, str]:
        try:
            return name, project_json(name), ""
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return name, None, f"{type(exc).__name__}: {exc}"

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for name, data, error in pool.map(one, todo):
            if data is None:
                report.unchecked[name] = f"PyPI project JSON unavailable ({error})"
                continue
            version = todo[name]
            latest = str(data["info"]["version"])
            del report.unchecked[name]
            if _same_version(version, latest):
                report.exact.add(name)
            else:
                report.partial[name] = latest
            for vuln in data.get("vulnerabilities") or []:
                if vuln.get("withdrawn"):
                    continue
                # It affects the latest release; an older locked one is assumed affected too.
                fixed = [str(v) for v in vuln.get("fixed_in") or []]
                report.findings.append(
                    Finding(
                        name,
                        version,
                        vuln["id"],
                        vuln.get("aliases") or [],
                        fixed,
                        "pypi-project-json",
                        (vuln.get("summary") or vuln.get("details") or "")[:200],
                    )
                )


def _same_version(a: str, b: str) -> bool:
    try:
        from packaging.version import Version

        return Version(a) == Version(b)
    except Exception:
        return a == b


def load_allowlist(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    entries = tomllib.loads(path.read_text()).get("ignore", [])
    out = {}
    for entry in entries:
        if not entry.get("reason", "").strip():
            raise SystemExit(f"{path}: every ignored id needs a reason ({entry.get('id')})")
        out[str(entry["id"])] = entry
    return out


def audit_vulnerabilities(requirements: str, strict: bool) -> bool:
    report = Report(parse_pins(requirements))
    print(f"auditing {len(report.packages)} pinned packages (pip-audit, PyPI)")
    run_pip_audit(requirements, report)
    for name in report.packages:  # pip-audit gave no report at all for these
        if name not in report.exact and name not in report.unchecked:
            report.unchecked[name] = "not in the pip-audit report"
    if report.unchecked:
        print(
            f"pip-audit could not check {len(report.unchecked)} packages (PyPI per-release data "
            "unreachable?); checking them against PyPI's project data"
        )
        check_with_project_json(report)
    allow = load_allowlist(ALLOWLIST)
    failures: list[tuple[Finding, dict[str, str] | None]] = []
    allowed: list[tuple[Finding, dict[str, str] | None]] = []
    for finding in report.findings:
        entry = next((allow[i] for i in finding.ids() if i in allow), None)
        if entry and finding.fix_versions:
            print(
                f"  {finding.id} is allow-listed but {finding.package} "
                f"{', '.join(finding.fix_versions)} fixes it: upgrade instead"
            )
            entry = None
        (allowed if entry else failures).append((finding, entry))
    for finding, entry in allowed:
        print(
            f"  allowed  {finding.package}=={finding.version} {finding.id}: "
            f"{entry['reason'] if entry else ''}"
        )
    for finding, _ in failures:
        fix = ", ".join(finding.fix_versions) or "no fix released"
        print(
            f"  VULNERABLE {finding.package}=={finding.version} {finding.id} "
            f"({', '.join(finding.aliases)}) fix: {fix} [{finding.source}] {finding.summary}"
        )
    print(
        f"checked exactly: {len(report.exact)}; partially (locked older than latest): "
        f"{len(report.partial)}; unchecked: {len(report.unchecked)}; findings: "
        f"{len(failures)} (+{len(allowed)} allow-listed)"
    )
    if report.partial:
        print(
            "  partially checked (only the latest release's advisories are visible here): "
            + ", ".join(
                f"{n} {report.packages[n]} (latest {v})" for n, v in sorted(report.partial.items())
            )
        )
    for name, why in sorted(report.unchecked.items()):
        print(f"  UNCHECKED {name}: {why}")
    ok = not failures and not report.unchecked
    if strict and report.partial:
        print("AUDIT_STRICT=1: partially checked packages count as failures")
        ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", type=Path, help="audit this pinned list, not uv.lock")
    parser.add_argument("--skip-secrets", action="store_true")
    args = parser.parse_args(argv)
    strict = os.environ.get("AUDIT_STRICT", "") not in ("", "0")
    requirements = args.requirements.read_text() if args.requirements else export_lock()
    ok = audit_vulnerabilities(requirements, strict)
    if not args.skip_secrets:
        sys.path.insert(0, str(Path(__file__).parent))
        from secrets_scan import scan

        hits = scan(ROOT)
        for hit in hits:
            print(f"  SECRET? {hit}")
        print(f"secrets scan: {len(hits)} finding(s)")
        ok = ok and not hits
    print("audit: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
