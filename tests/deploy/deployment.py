"""Read the deployment files as their tools would, to start their services as processes here.

Nothing here knows a service's command or variables: they come from ``deploy/compose.yaml`` (with compose's
variable interpolation), the Dockerfile's ``ENTRYPOINT`` of the stage a service builds, and the systemd
units (``Environment=``, ``EnvironmentFile=``, specifiers, ``${VAR}`` expansion). What a test may change is
only what differs between a container and this machine: hosts, ports, paths and secret values
(`Substitutions`).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
SYSTEMD = DEPLOY / "systemd"
KUBERNETES = DEPLOY / "kubernetes"


# --- compose ---------------------------------------------------------------------------------------------
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(KeyError):
    """A ``${VAR:?message}`` whose variable is not set: compose refuses the file then."""


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}`` and ``${VAR?error}``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        value = variables.get(name)
        unset_or_empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and unset_or_empty:
            return arg
        if op in (":?", "?") and unset_or_empty:
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(one, text)


def load_compose() -> dict[str, Any]:
    """``compose.yaml`` parsed, YAML anchors and merge keys resolved."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def dockerfile_entrypoints() -> dict[str, list[str]]:
    """``stage -> ENTRYPOINT`` (exec form) for each stage of the Dockerfile that sets one."""
    entrypoints: dict[str, list[str]] = {}
    stage = ""
    for line in DOCKERFILE.read_text().splitlines():
        if m := re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE):
            stage = m.group(1)
        elif line.startswith("ENTRYPOINT"):
            entrypoints[stage] = yaml.safe_load(line.removeprefix("ENTRYPOINT").strip())
    return entrypoints


def duration_s(value: str | int) -> float:
    """Seconds of a compose duration (``60s``, ``1m30s``) or a bare number."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    if not parts:
        return float(value)
    return sum(float(n) * units[u] for n, u in parts)


@dataclass
class Service:
    """One service as a process would run it: what the file says, interpolated, nothing substituted yet."""

    name: str
    argv: list[str]
    env: dict[str, str]
    replicas: int = 1
    healthcheck: list[str] | None = None
    stop_grace_s: float = 10.0
    volumes: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)


def compose_services(variables: Mapping[str, str]) -> dict[str, Service]:
    """Every service of ``compose.yaml``, its image's entrypoint before its command, interpolated."""
    entrypoints = dockerfile_entrypoints()
    services = {}
    for name, spec in load_compose()["services"].items():
        build = spec.get("build") or {}
        entrypoint = entrypoints.get(build.get("target", ""), []) if build else []
        command = [interpolate(str(a), variables) for a in spec.get("command", [])]
        environment = spec.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        env = {k: interpolate(str(v), variables) for k, v in environment.items()}
        health = spec.get("healthcheck", {}).get("test")
        services[name] = Service(
            name=name,
            argv=[*entrypoint, *command],
            env=env,
            replicas=int(spec.get("deploy", {}).get("replicas", 1)),
            healthcheck=[interpolate(str(a), variables) for a in health] if health else None,
            stop_grace_s=duration_s(spec.get("stop_grace_period", "10s")),
            volumes=[interpolate(str(v), variables) for v in spec.get("volumes", [])],
            profiles=list(spec.get("profiles", [])),
        )
    return services


def healthcheck_argv(test: list[str]) -> list[str]:
    """A compose healthcheck ``test`` as a command line: ``CMD`` runs it, ``CMD-SHELL`` through ``sh -c``."""
    kind, *rest = test
    if kind == "CMD-SHELL":
        return ["sh", "-c", " ".join(rest)]
    if kind == "CMD":
        return rest
    raise ValueError(f"healthcheck test {test!r}: only CMD and CMD-SHELL are run here")


# --- systemd ---------------------------------------------------------------------------------------------
@dataclass
class Unit:
    """One systemd service unit, as systemd would start it (an instance, for a template)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    working_directory: str
    timeout_stop_s: float
    kill_signal: str
    kill_mode: str


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """``section -> [(key, value), ...]`` in file order (keys repeat: Environment=, EnvironmentFile=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def read_environment_file(path: Path) -> dict[str, str]:
    """systemd's ``EnvironmentFile=`` format: ``KEY=VALUE`` lines, ``#`` comments, optional quotes."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def specifiers(text: str, instance: str, hostname: str) -> str:
    """systemd's specifiers used in the units: ``%i``, ``%I`` (instance), ``%H`` (host name), ``%%``."""
    table = {"i": instance, "I": instance, "H": hostname, "%": "%"}
    return re.sub(r"%(.)", lambda m: table.get(m.group(1), m.group(0)), text)


def expand_command(command: str, env: Mapping[str, str]) -> list[str]:
    """``ExecStart=`` as systemd splits it: ``${VAR}`` is one word, ``$VAR`` splits on whitespace."""
    argv: list[str] = []
    for word in shlex.split(command):
        if m := re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word):
            argv.extend(env.get(m.group(1), "").split())
        else:
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def systemd_unit(path: Path, instance: str, hostname: str, paths: Callable[[str], str]) -> Unit:
    """The unit at ``path`` as instance ``instance``; ``paths`` maps the install layout to this machine.

    Environment= lines apply first and EnvironmentFile= ones override them, as systemd does; a file named
    with a leading ``-`` may be missing.
    """
    service = read_unit(path)["Service"]
    env: dict[str, str] = {}
    from_files: dict[str, str] = {}
    options: dict[str, str] = {}
    for key, raw in service:
        value = specifiers(raw, instance, hostname)
        if key == "Environment":
            name, _, val = value.partition("=")
            env[name] = val
        elif key == "EnvironmentFile":
            optional = value.startswith("-")
            file = Path(paths(value.lstrip("-")))
            if file.exists():
                from_files.update(read_environment_file(file))
            elif not optional:
                raise FileNotFoundError(f"{path.name}: EnvironmentFile {file} is missing")
        else:
            options[key] = value
    env.update(from_files)
    exec_start = paths(options["ExecStart"])
    return Unit(
        name=path.name.replace("@.service", f"@{instance}.service"),
        argv=expand_command(exec_start, env),
        env=env,
        working_directory=paths(options.get("WorkingDirectory", "/")),
        timeout_stop_s=duration_s(options.get("TimeoutStopSec", "90s")),
        kill_signal=options.get("KillSignal", "SIGTERM"),
        kill_mode=options.get("KillMode", "control-group"),
    )


# --- running them ----------------------------------------------------------------------------------------
@dataclass
class Substitutions:
    """What may differ between the files and this machine: hosts, ports and paths (secrets are variables)."""

    hosts: dict[str, str]
    """``redis`` -> ``127.0.0.1``: a host name followed by ``:port``."""
    ports: dict[str, int]
    """``6379`` -> a free port, wherever the number stands alone."""
    paths: dict[str, str]
    """A container or install path -> one on this machine (longest first)."""

    def __call__(self, text: str) -> str:
        """``text`` with every host, port and path replaced."""
        for src, dst in sorted(self.paths.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(src, dst)
        for host, to in self.hosts.items():
            text = re.sub(rf"\b{re.escape(host)}(?=:\d)", to, text)
        text = text.replace("0.0.0.0", "127.0.0.1")
        for port, to in self.ports.items():
            text = re.sub(rf"(?<![0-9]){port}(?![0-9])", str(to), text)
        return text


@dataclass
class Running:
    """A started process and where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        """Everything it printed so far."""
        return self.output.read_text(errors="replace")


class Processes:
    """The processes a test started; `stop_all` stops them in reverse order, each with its own signal."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.running: list[Running] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path | str) -> Running:
        """Start ``argv`` in a new session, its output to a log file."""
        output = self.logs / f"{name}.out"
        with output.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        handle = Running(name, proc, output)
        self.running.append(handle)
        return handle

    def stop(self, handle: Running, sig: int = signal.SIGTERM, grace: float = 15.0) -> float:
        """Send ``sig`` to the process (not its group: Celery's main process stops its pool itself);
        SIGKILL the group after ``grace``. Returns how long it took to exit."""
        started = time.monotonic()
        if handle.proc.poll() is None:
            handle.proc.send_signal(sig)
            try:
                handle.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(handle.proc.pid, signal.SIGKILL)
                handle.proc.wait(10)
        return time.monotonic() - started

    def stop_all(self) -> None:
        """Stop everything still running, the last started first."""
        for handle in reversed(self.running):
            self.stop(handle)
            if handle.proc.poll() is None:  # pragma: no cover - stop() already killed it
                os.killpg(handle.proc.pid, signal.SIGKILL)

    def __iter__(self) -> Iterator[Running]:
        return iter(self.running)


def wait_until(check: Callable[[], bool], what: str, timeout: float, watch: list[Running]) -> None:
    """Poll ``check`` until it holds; fail with the watched processes' output if one exits or time is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        dead = [r for r in watch if r.proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            shown = dead or watch
            tails = "\n".join(f"--- {r.name} (exit {r.proc.poll()}):\n{r.text()[-2500:]}" for r in shown)
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s\n{tails}")
        time.sleep(0.1)
