"""systemd unit names and drop-ins (pure text)."""

from __future__ import annotations

import string

from thinpool.core.model import EngineState
from thinpool.core.plan import Action, ActionKind, Target
from thinpool.core.programs import argv as programs

_PLAIN = set(string.ascii_letters + string.digits + ":_.")


def escape_path(path: str) -> str:
    """``systemd-escape --path``: /dev/mapper/docker-thinpool -> dev-mapper-docker\\x2dthinpool."""
    trimmed = "/".join(part for part in path.split("/") if part)
    if not trimmed:
        return "-"
    escaped = []
    for index, char in enumerate(trimmed):
        if char == "/":
            escaped.append("-")
        elif char in _PLAIN and not (index == 0 and char == "."):
            escaped.append(char)
        else:
            escaped.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(escaped)


def device_unit(path: str) -> str:
    return f"{escape_path(path)}.device"


def drop_in(comment: str, unit: dict[str, str], service: tuple[str, ...] = ()) -> str:
    lines = [f"# {comment}", "[Unit]", *(f"{key}={value}" for key, value in unit.items())]
    if service:
        lines += ["", "[Service]", *service]
    return "\n".join(lines) + "\n"


def reload_action(state: EngineState, actions: tuple[Action, ...]) -> tuple[Action, ...]:
    """systemctl daemon-reload after a drop-in changed, where systemd runs."""
    if not state.systemd or not any(action.kind == ActionKind.SYSTEMD_DROP_IN for action in actions):
        return ()
    argv = programs.systemctl_daemon_reload()
    return (Action("change", ActionKind.SYSTEMD, Target(name="daemon-reload"), "systemd reads the drop-in", argv),)


def restart_steps(service: str, actions: tuple[Action, ...]) -> tuple[str, ...]:
    """thinpool never restarts an engine itself: that stops every container."""
    if not actions:
        return ()
    return (f"restart {service} to use its new configuration (stops its containers): systemctl restart {service}",)


def drop_in_action(
    state: EngineState, path: str, service: str, unit: dict[str, str], why: str, service_lines: tuple[str, ...] = ()
) -> tuple[Action, ...]:
    content = drop_in(f"Written by thinpool: {why}", unit, service_lines)
    if state.files.get(path) == content:
        return ()
    return (Action("write", ActionKind.SYSTEMD_DROP_IN, Target(name=service), why, path=path, content=content),)
