"""No secrets in the repository: grep every tracked (and untracked, not ignored) file.

Looks for private keys and for the fixed shapes of well-known tokens (cloud, VCS, chat, payment,
model hubs), plus credentials assigned literally in configuration (``password: "..."``). A line
that must hold such text on purpose (a test vector) carries ``secrets-scan: allow``.

    uv run python audit/secrets_scan.py     # exit 1 and the file:line of each finding
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ALLOW_MARKER = "secrets-scan: allow"
MAX_BYTES = 2 * 2**20

PATTERNS: dict[str, re.Pattern[str]] = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})"),
    "GitLab token": re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    "Stripe live key": re.compile(r"\b[sr]k_live_[0-9A-Za-z]{20,}"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{34,}\b"),
    "OpenAI/Anthropic key": re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{32,}"),
    "npm token": re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
    "PyPI token": re.compile(r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}"),
    "JSON web token": re.compile(
        r"\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"
    ),
    "URL with a password": re.compile(r"\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:[^/\s:@]{6,}@[^\s/]+"),
    "credential assigned literally": re.compile(
        r"""(?ix)
        \b(?:password|passwd|secret|secret_key|api_key|apikey|access_token|auth_token|private_key)
        ["']?\s*[:=]\s*
        ["']([^"'\s$<>{}]{12,})["']
        """
    ),
}

# Values that are obviously placeholders, not credentials.
PLACEHOLDER = re.compile(
    r"(?i)^(?:x+|\*+)$|changeme|change-me|example|dummy|test|fake|your-|not-a-real"
)
# Test code holds made-up credentials on purpose: there only the fixed token shapes are checked.
GENERIC_EXEMPT_DIRS = ("tests/",)


def repository_files(root: Path) -> list[Path]:
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    )
    names = sorted({n for n in result.stdout.decode().split("\0") if n})
    return [root / n for n in names if (root / n).is_file()]


def scan_text(text: str, generic: bool = True) -> list[tuple[int, str]]:
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        if ALLOW_MARKER in line:
            continue
        for name, pattern in PATTERNS.items():
            match = pattern.search(line)
            if match is None:
                continue
            if name == "credential assigned literally" and (
                not generic or PLACEHOLDER.search(match.group(1))
            ):
                continue
            hits.append((number, name))
    return hits


def scan(root: Path) -> list[str]:
    findings = []
    for path in repository_files(root):
        try:
            if path.stat().st_size > MAX_BYTES:
                continue
            raw = path.read_bytes()
        except OSError:
            continue
        if b"\0" in raw[:8192]:
            continue  # binary
        relative = path.relative_to(root).as_posix()
        generic = not relative.startswith(GENERIC_EXEMPT_DIRS)
        for number, name in scan_text(raw.decode("utf-8", "replace"), generic):
            findings.append(f"{relative}:{number}: {name}")
    return findings


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    findings = scan(root)
    for finding in findings:
        print(finding)
    print(f"secrets scan: {len(findings)} finding(s) in {len(repository_files(root))} files")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
