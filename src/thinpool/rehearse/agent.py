"""The guest side of the rehearsal VM: PID 1, running requests the host drops into the share.

Protocol (all files in the 9p share, written atomically by rename):
  req/<id>.json  {"argv": [...], "timeout": s, "input": str|null, "env": {...}, "background": bool}
  res/<id>.json  {"returncode": n, "stdout": str, "stderr": str, "seconds": f}
  ready          written once the guest can take requests
A request with argv ["poweroff"] syncs and powers the VM off: at once when the agent is PID 1, through
systemd's shutdown when it runs as a unit.
Standard library only: it runs on the guest's interpreter (the release's python3, or the host's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.05


def _reap_orphans() -> None:
    """PID 1 adopts daemons' orphans; reap them only between requests, never mid-run."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _power_off() -> None:
    os.sync()
    if os.getpid() != 1:
        subprocess.run(["systemctl", "poweroff", "--no-block"], check=False)
        return
    Path("/proc/sysrq-trigger").write_text("o")
    time.sleep(60)


def _execute(request: dict[str, Any], logs: Path, request_id: str) -> dict[str, Any]:
    env = {**os.environ, **request.get("env", {})}
    started = time.monotonic()
    if request.get("background"):
        log = (logs / f"{request_id}.log").open("wb")
        proc = subprocess.Popen(request["argv"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return {"returncode": 0, "stdout": str(proc.pid), "stderr": "", "seconds": 0.0}
    try:
        proc_done = subprocess.run(
            request["argv"],
            input=request.get("input"),
            capture_output=True,
            text=True,
            env=env,
            timeout=request.get("timeout") or 600,
            check=False,
        )
        code, out, err = proc_done.returncode, proc_done.stdout, proc_done.stderr
    except subprocess.TimeoutExpired as expired:
        code, out, err = 124, _text(expired.stdout), _text(expired.stderr) + "\nthinpool-agent: timed out"
    except OSError as error:
        code, out, err = 127, "", f"thinpool-agent: {error}"
    return {"returncode": code, "stdout": out, "stderr": err, "seconds": round(time.monotonic() - started, 3)}


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def serve(share: Path) -> None:
    requests, responses, logs = share / "req", share / "res", share / "logs"
    for folder in (requests, responses, logs):
        folder.mkdir(exist_ok=True)
    (share / "ready").write_text(f"{time.monotonic():.3f}\n")
    while True:
        pending = sorted(requests.glob("*.json"))
        if not pending:
            _reap_orphans()
            time.sleep(POLL_SECONDS)
            continue
        for path in pending:
            request_id = path.stem
            request = json.loads(path.read_text())
            path.unlink()
            if request["argv"] == ["poweroff"]:
                _power_off()
                continue
            result = _execute(request, logs, request_id)
            temporary = responses / f".{request_id}.tmp"
            temporary.write_text(json.dumps(result))
            temporary.rename(responses / f"{request_id}.json")


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
