"""Prometheus metrics of thin pools: read fresh at every collection (scrape or textfile write)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from thinpool.core.findings import Finding, Severity
from thinpool.core.health import PoolStatus
from thinpool.core.model import WhenFull
from thinpool.system import files

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry


@dataclass(frozen=True)
class Reading:
    vg: str
    pool: str
    status: PoolStatus | None  # None: the pool could not be read
    findings: tuple[Finding, ...] = ()


Reader = Callable[[], list[Reading]]

# name, help, value of a status
GAUGES: tuple[tuple[str, str, Callable[[PoolStatus], float]], ...] = (
    ("data_size_bytes", "Size of the pool's data.", lambda s: s.data_size),
    ("data_used_bytes", "Data in use.", lambda s: s.data_used),
    ("data_used_ratio", "Data in use, 0..1.", lambda s: s.data_ratio),
    ("metadata_size_bytes", "Size of the pool's metadata.", lambda s: s.metadata_size),
    ("metadata_used_bytes", "Metadata in use.", lambda s: s.metadata_used),
    ("metadata_used_ratio", "Metadata in use, 0..1; the pool goes read-only at 1.", lambda s: s.metadata_ratio),
    ("chunk_size_bytes", "Data chunk size.", lambda s: s.chunk_size),
    ("thin_volumes", "lvm thin volumes in the pool.", lambda s: s.thin_count),
    ("virtual_size_bytes", "Sum of the lvm thin volumes' sizes.", lambda s: s.virtual_size),
    ("overprovision_ratio", "Virtual size over data size.", lambda s: s.overprovision_ratio),
    ("vg_free_bytes", "Free space in the pool's volume group.", lambda s: s.vg_free_extents * s.extent_size),
    ("autoextend_steps_available", "Autoextend steps the VG's free space still allows.", lambda s: s.autoextend_steps),
    (
        "autoextend_threshold_ratio",
        "Autoextend threshold, 0..1 (1: off or no profile).",
        lambda s: s.autoextend.threshold / 100 if s.autoextend else 1.0,
    ),
    ("monitored", "1 when dmeventd monitors the pool.", lambda s: float(s.monitor == "monitored")),
    ("healthy", "1 when lvm reports no health problem.", lambda s: float(not s.health_problems)),
    ("raid_degraded", "1 when a RAID data or metadata LV lost an image or needs a refresh.", lambda s: s.raid_degraded),
    ("raid_in_sync", "1 when every RAID part's images agree (1 with no RAID).", lambda s: s.raid_in_sync),
    (
        "reclaimable_bytes",
        "Bytes the pool maps for thinpool's filesystems that they no longer use (thinpool maintain trims them).",
        lambda s: s.reclaimable,
    ),
    (
        "error_when_full",
        "1 when writes fail at once on a full pool, 0 when they queue.",
        lambda s: s.when_full == WhenFull.ERROR,
    ),
    (
        "metadata_backup_age_seconds",
        "Seconds since the newest metadata backup (thinpool backup); +Inf when there is none.",
        lambda s: math.inf if s.backup_age is None else s.backup_age,
    ),
)


VOLUME_MAPPED = "thinpool_volume_mapped_bytes"
VOLUME_MAPPED_HELP = (
    "Bytes the pool maps for each lvm thin volume; mount_point is where its filesystem is mounted (empty: nowhere)."
)
DURATION = "thinpool_collection_duration_seconds"
DURATION_HELP = "Seconds this collection took: the pools' lvm reports and the health rules."

Sample = tuple[dict[str, str], float]
Family = tuple[str, str, list[Sample]]  # name, help, samples


def families(readings: list[Reading], seconds: float | None = None) -> list[Family]:
    """Every gauge family of these readings, labelled vg and pool (and severity for the findings), and,
    when given, how many seconds reading them took."""
    up: Family = ("thinpool_up", "1 when the pool's lvm report was read.", [])
    gauges: list[Family] = [(f"thinpool_{name}", text, []) for name, text, _ in GAUGES]
    findings: Family = ("thinpool_doctor_findings", "thinpool doctor findings by severity.", [])
    volumes: Family = (VOLUME_MAPPED, VOLUME_MAPPED_HELP, [])
    for reading in readings:
        labels = {"vg": reading.vg, "pool": reading.pool}
        up[2].append((labels, float(reading.status is not None)))
        if reading.status is None:
            continue
        for (_, _, samples), (_, _, value) in zip(gauges, GAUGES, strict=True):
            samples.append((labels, float(value(reading.status))))
        volumes[2].extend(_volume_samples(labels, reading.status))
        for severity in tuple(Severity)[1:]:
            count = sum(finding.severity == severity for finding in reading.findings)
            findings[2].append(({**labels, "severity": severity}, float(count)))
    took: list[Family] = [] if seconds is None else [(DURATION, DURATION_HELP, [({}, seconds)])]
    return [up, *gauges, volumes, findings, *took]


def _volume_samples(labels: dict[str, str], status: PoolStatus) -> list[Sample]:
    """Each thin volume's mapped bytes, with where it is mounted: an engine's store and the volume it is on."""
    found: list[Sample] = []
    for volume in status.volumes:
        mount_point = volume.filesystem.mount_point if volume.filesystem else ""
        found.append(({**labels, "volume": volume.name, "mount_point": mount_point}, float(volume.mapped)))
    return found


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def exposition(readings: list[Reading], seconds: float | None = None) -> str:
    """Prometheus' text format, written without prometheus_client (a textfile run stays cheap to start)."""
    lines = []
    for name, text, samples in families(readings, seconds):
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        for labels, value in samples:
            pairs = ",".join(f'{key}="{_label_value(item)}"' for key, item in labels.items())
            lines.append(f"{name}{{{pairs}}} {_number(value)}" if pairs else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def timed(read: Reader) -> tuple[list[Reading], float]:
    """The readings and the seconds they took."""
    started = time.perf_counter()
    readings = read()
    return readings, time.perf_counter() - started


class PoolCollector:
    def __init__(self, read: Reader) -> None:
        self._read = read
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        with self._lock:
            readings, seconds = timed(self._read)
        for name, text, samples in families(readings, seconds):
            keys = list(samples[0][0]) if samples else ["vg", "pool"]
            family = GaugeMetricFamily(name, text, labels=keys)
            for labels, value in samples:
                family.add_metric([labels[key] for key in keys], value)
            yield family


def registry_for(read: Reader) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(read))
    return registry


def write_textfile(path: str, read: Reader) -> None:
    """For node_exporter's textfile collector: written to a temporary file, then renamed (mode 0644)."""
    files.write_atomically(Path(path), exposition(*timed(read)), keep_owner=False)


def write_textfile_every(path: str, read: Reader, every: float, wait: Callable[[float], bool]) -> int:
    """Write the textfile now and then every ``every`` seconds from the start of the last write, until
    ``wait`` (an Event's wait: True once stopped) says stop; returns how many were written.

    A writer that stays running pays Python's start and thinpool's imports once; each write then costs
    what a ``--listen`` scrape does: one lvm report per pool and the health rules."""
    written = 0
    while True:
        started = time.monotonic()
        write_textfile(path, read)
        written += 1
        if wait(max(0.0, every - (time.monotonic() - started))):
            return written


def serve(address: str, port: int, read: Reader, stop: threading.Event) -> None:
    """Serve /metrics until ``stop`` is set.

    The server is made here rather than by prometheus_client's start_http_server, which returns
    nothing to stop it with before 0.17 (Debian 12 ships 0.16)."""
    import socket
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """No line per scrape on stderr."""

    family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type("MetricsServer", (ThreadingWSGIServer,), {"address_family": family})
    server: WSGIServer = make_server(
        address, port, make_wsgi_app(registry_for(read)), server_class, handler_class=Quiet
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
