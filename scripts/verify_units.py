"""Check the systemd units in ``deploy/systemd/`` with ``systemd-analyze verify``.

    python scripts/verify_units.py [--bin DIR]

The units name the install layout (``/opt/assistant-jobs/bin/ajobs``, ``/etc/assistant-jobs/env``,
``/var/lib/assistant-jobs``), which this machine does not have, and ``systemd-analyze verify`` refuses a unit
whose ``ExecStart`` program is missing. So the units are copied into a temporary directory with those paths
pointing at this virtualenv's ``bin`` (or ``--bin``) and at files made there; the template is checked as the
instance ``assistant-jobs-worker@runs``. Any line systemd prints (an unknown key, a bad signal name, a typo
in a section) fails the check, since ``systemd-analyze`` itself exits 0 on those. Exit 0 when clean, or
when ``systemd-analyze`` is not installed (said on stderr); 1 when systemd complains.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
"""The unit files and the worker instances' example environment files."""

INSTALL_BIN = "/opt/assistant-jobs/bin/"
CONFIG_DIR = "/etc/assistant-jobs/"
STATE_DIR = "/var/lib/assistant-jobs"
TEMPLATE_INSTANCE = "runs"
"""The instance the worker template is checked as (its environment file is worker-runs.env)."""


def localise(text: str, bin_dir: Path, workdir: Path) -> str:
    """A unit's text with the install paths replaced by ``bin_dir`` and ``workdir``."""
    return (
        text.replace(INSTALL_BIN, f"{bin_dir}/")
        .replace(CONFIG_DIR, f"{workdir}/")
        .replace(STATE_DIR, str(workdir))
    )


def unit_copies(bin_dir: Path, workdir: Path) -> list[Path]:
    """Copy every unit (the template as one instance) and the files they read into ``workdir``."""
    copies = []
    for unit in sorted(UNITS.glob("*.service")):
        name = unit.name.replace("@.service", f"@{TEMPLATE_INSTANCE}.service")
        copy = workdir / name
        copy.write_text(localise(unit.read_text(), bin_dir, workdir))
        copies.append(copy)
    shutil.copy(ROOT / "deploy" / "env.example", workdir / "env")
    for env_file in UNITS.glob("*.env"):
        shutil.copy(env_file, workdir / env_file.name)
    return copies


def verify(bin_dir: Path) -> tuple[int, str]:
    """Run ``systemd-analyze verify`` on localised copies: (0, '') when clean, else (1, what it said)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise FileNotFoundError("systemd-analyze")
    with tempfile.TemporaryDirectory(prefix="aj-units-") as tmp:
        workdir = Path(tmp)
        copies = unit_copies(bin_dir, workdir)
        done = subprocess.run(
            [analyze, "verify", "--man=no", *map(str, copies)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=workdir,
        )
    said = (done.stdout + done.stderr).strip()
    return (0 if done.returncode == 0 and not said else 1), said


def main(argv: list[str] | None = None) -> int:
    """Verify the units; print what systemd said."""
    parser = argparse.ArgumentParser(description="systemd-analyze verify the units in deploy/systemd/")
    parser.add_argument("--bin", type=Path, default=Path(sys.prefix) / "bin", help="where ajobs is installed")
    args = parser.parse_args(argv)
    try:
        code, said = verify(args.bin.resolve())
    except FileNotFoundError:
        print("systemd-analyze not found: the systemd units were not checked", file=sys.stderr)
        return 0
    if code:
        print(f"systemd-analyze verify complained:\n{said}", file=sys.stderr)
    else:
        print(f"systemd units ok ({', '.join(p.name for p in sorted(UNITS.glob('*.service')))})")
    return code


if __name__ == "__main__":
    sys.exit(main())
