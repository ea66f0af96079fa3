"""``thinpool status``, ``doctor`` and ``metrics``: read-only views of a pool, for people and machines."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from thinpool.cli.arguments import seconds
from thinpool.core.envelope import envelope
from thinpool.core.units import format_size, parse_size
from thinpool.errors import ThinpoolError

if TYPE_CHECKING:
    from thinpool.app.context import Context
    from thinpool.app.metrics import Reading
    from thinpool.core.health import PoolStatus
    from thinpool.core.sizing import Workload

EXIT_WARNING = 3
EXIT_CRITICAL = 4
DOCTOR_EXIT_HELP = """exit codes:
  0    no finding, or only informational ones
  1    error (the pool could not be read)
  3    the worst finding is a warning
  4    the worst finding is critical"""


def split_target(text: str) -> tuple[str, str]:
    from thinpool.core.names import check_target

    return check_target(text)


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ThinpoolError(
            f"--listen {text!r} is not ADDRESS:PORT with a port in 1-65535", fix="e.g. --listen 127.0.0.1:9720"
        )
    return host.strip("[]"), int(port)


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.2f}%"


def _when_full(status: PoolStatus) -> str:
    from thinpool.core.health import when_full_wanted

    wanted, why = when_full_wanted(status)
    if status.when_full == wanted:
        return f"{status.when_full}: {why}"
    return f"{status.when_full or '-'}; should be {wanted}: {why} (thinpool maintain)"


def render_status(status: PoolStatus) -> str:
    auto = status.autoextend
    policy = (
        "no profile (lvm.conf applies)"
        if auto is None
        else ("off (threshold 100)" if not auto.enabled else f"at {auto.threshold}%, by {auto.percent}%")
    )
    rows = [
        ("data", f"{format_size(status.data_used)} of {format_size(status.data_size)} ({_percent(status.data_ratio)})"),
        (
            "metadata",
            f"{format_size(status.metadata_used)} of {format_size(status.metadata_size)} "
            f"({_percent(status.metadata_ratio)})",
        ),
        ("chunk", format_size(status.chunk_size)),
        ("layout", _layout(status)),
        (
            "thin volumes",
            f"{status.thin_count} (virtual {format_size(status.virtual_size)}, "
            f"{status.overprovision_ratio:.2f}x the data)",
        ),
        ("mounted", _mounted(status)),
        (
            "VG free",
            f"{status.vg_free_extents} extents ({format_size(status.vg_free_extents * status.extent_size)}): "
            f"{status.autoextend_steps} autoextend step(s)",
        ),
        ("autoextend", f"{policy}; profile {status.profile or '-'}"),
        ("monitoring", status.monitor or "-"),
        ("when full", _when_full(status)),
        ("reclaimable", f"{format_size(status.reclaimable)} mapped that filesystems no longer use"),
        ("health", ", ".join(status.health_problems) or "ok"),
        ("devices", ", ".join(status.devices) or "-"),
        ("made by", _owner(status)),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{status.vg}/{status.pool} ({status.attr})"] + [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines) + "\n"


def _layout(status: PoolStatus) -> str:
    """Each part's layout and disks; a RAID's state when it is not whole and in sync."""
    shown = []
    for part in status.parts:
        state = part.problem or ("" if part.in_sync else f"syncing, {part.sync_percent or '?'}%")
        if not part.raid and len(part.devices) > 1:
            state = "no copy: one disk's death loses it"
        where = f" on {', '.join(part.devices)}" if part.devices else ""
        shown.append(f"{part.role} {part.segtype}{where}" + (f" ({state})" if state else ""))
    return "; ".join(shown) or "-"


def _owner(status: PoolStatus) -> str:
    ownership = status.ownership
    cared = "" if not ownership.foreign else (", adopted by thinpool" if ownership.adopted else ", not adopted")
    return f"{ownership.owner.label} ({ownership.evidence}{cared})"


def _mounted(status: PoolStatus) -> str:
    """Where the pool's thin volumes are mounted: the engines' stores on it."""
    mounted = [
        f"{volume.name} at {volume.filesystem.mount_point} ({volume.filesystem.fstype})"
        for volume in status.volumes
        if volume.filesystem is not None
    ]
    return ", ".join(mounted) or "no thin volume"


def _cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import watch

    vg, pool = split_target(args.target)
    while True:
        status = watch.status(ctx, vg, pool)
        text = json.dumps(status.to_dict(), indent=2) + "\n" if args.json else render_status(status)
        if args.watch:
            sys.stdout.write("\033[H\033[2J" + time.strftime("%H:%M:%S ") + text)
            sys.stdout.flush()
            ctx.sleep(args.watch)
            continue
        sys.stdout.write(text)
        return 0


def _workload(args: argparse.Namespace) -> Workload:
    from thinpool.core.sizing import Workload

    return Workload(args.max_thin_devices, parse_size(args.thin_device_size, what="--thin-device-size"))


def _cmd_doctor(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import watch
    from thinpool.core.findings import worst

    vg, pool = split_target(args.target)
    status, found = watch.doctor(ctx, vg, pool, _workload(args))
    verdict = worst(found)
    if args.json:
        findings = [finding.to_dict() for finding in found]
        body = {"vg": vg, "pool": pool, "worst": verdict, "findings": findings, "status": status.to_dict()}
        data = envelope("thinpool-doctor", body)
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        for finding in found:
            sys.stdout.write(
                f"{finding.severity.upper():<8} {finding.code}: {finding.problem}\n         fix: {finding.fix}\n"
            )
        sys.stdout.write(f"{vg}/{pool}: " + ("healthy, nothing to fix\n" if not found else f"worst: {verdict}\n"))
    return {"critical": EXIT_CRITICAL, "warning": EXIT_WARNING}.get(verdict, 0)


def _stop_on_signals() -> threading.Event:
    """Set by SIGTERM (systemctl stop) or SIGINT (Ctrl-C)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _every(text: str) -> int:
    from thinpool.core.units import parse_span

    try:
        seconds = parse_span(text, what="--every")
    except ThinpoolError as error:
        raise argparse.ArgumentTypeError(f"{error.problem}; {error.fix}") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one second, such as 30s or 1min")
    return seconds


def _cmd_metrics(args: argparse.Namespace, ctx: Context) -> int:
    from thinpool.app import metrics, watch

    targets = [split_target(text) for text in args.target or ["docker/thinpool"]]
    workload = _workload(args)

    def read() -> list[Reading]:
        return watch.readings(ctx, targets, workload)

    if args.textfile:
        folder = Path(args.textfile).parent
        if not folder.is_dir():
            raise ThinpoolError(
                f"--textfile {args.textfile}: the folder {folder} does not exist",
                fix=f"create it (node_exporter's --collector.textfile.directory names it): mkdir -p {folder}",
            )
        if args.every is None:
            metrics.write_textfile(args.textfile, read)
            return 0
        metrics.write_textfile_every(args.textfile, read, args.every, _stop_on_signals().wait)
        return 0
    if args.every is not None:
        raise ThinpoolError(
            "--every is for --textfile: a --listen exporter reads afresh at every scrape",
            fix="drop --every, or write a textfile: --textfile PATH --every 1min",
        )
    host, port = _listen_address(args.listen)
    stop = _stop_on_signals()
    print(f"serving thinpool metrics on http://{args.listen}/metrics", file=sys.stderr, flush=True)
    metrics.serve(host, port, read, stop)
    return 0


def _add_workload(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-thin-devices",
        type=int,
        default=1000,
        metavar="N",
        help="image layers + containers the metadata must hold (default: 1000)",
    )
    parser.add_argument(
        "--thin-device-size", default="10GiB", metavar="SIZE", help="virtual size of one thin device (default: 10GiB)"
    )


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="a pool's usage, headroom, policy and health (one lvm report)",
        description="Data and metadata use, chunk, thin volumes and overprovisioning, the VG's free "
        "extents and how many autoextend steps they allow, monitoring, profile and health.",
    )
    status.add_argument("target", nargs="?", default="docker/thinpool", metavar="VG/POOL")
    status.add_argument("--json", action="store_true", help="print as JSON (sizes in bytes)")
    status.add_argument("--watch", type=seconds, metavar="SECONDS", help="refresh every SECONDS until interrupted")
    status.set_defaults(handler=_cmd_status)
    doctor = commands.add_parser(
        "doctor",
        help="find what will hurt the pool, each with the command that fixes it",
        description="Checks: loop devices, monitoring, the autoextend profile and the room for its next "
        "step, data and metadata over the threshold, metadata below the workload model, lvm's health "
        "flags, and the engines' configs (another pool, deferred removal, a TCP API without TLS, "
        "devicemapper on Docker 25+).",
        epilog=DOCTOR_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("target", nargs="?", default="docker/thinpool", metavar="VG/POOL")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    _add_workload(doctor)
    doctor.set_defaults(handler=_cmd_doctor)
    metrics = commands.add_parser(
        "metrics",
        help="Prometheus metrics: a node_exporter textfile, or an HTTP endpoint",
        description="Gauges labelled vg and pool: sizes and use in bytes, ratios, autoextend steps left, "
        "monitoring, health and doctor findings by severity. Read afresh at every write or scrape.",
        epilog="examples:\n  thinpool metrics --textfile /var/lib/node_exporter/textfile/thinpool.prom\n"
        "  thinpool metrics --textfile /var/lib/node_exporter/textfile/thinpool.prom --every 1min\n"
        "  thinpool metrics --listen 127.0.0.1:9720 docker/thinpool\n\n"
        "--every keeps one process writing (what thinpool-metrics.service runs): Python starts once, "
        "and each\nwrite costs one lvm report per pool.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    metrics.add_argument("target", nargs="*", metavar="VG/POOL", help="pools (default: docker/thinpool)")
    where = metrics.add_mutually_exclusive_group(required=True)
    where.add_argument("--textfile", metavar="PATH", help="write the metrics to PATH atomically, then exit")
    where.add_argument("--listen", metavar="ADDRESS:PORT", help="serve /metrics there until stopped")
    metrics.add_argument(
        "--every", type=_every, metavar="SPAN", help="with --textfile: keep running, rewrite it every SPAN (30s, 1min)"
    )
    _add_workload(metrics)
    metrics.set_defaults(handler=_cmd_metrics)
