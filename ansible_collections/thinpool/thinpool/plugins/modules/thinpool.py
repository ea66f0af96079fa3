#!/usr/bin/python
# Copyright: thinpool contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Ansible module: an LVM thin pool for containers, planned and applied by the thinpool library."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: thinpool
short_description: LVM thin-pool storage for container hosts, planned in exact extents
version_added: "0.1.0"
description:
  - Creates (or converges) an LVM thin pool on the given devices or in an existing volume group,
    sized by thinpool's planner (metadata, its hidden spare and one autoextend step all counted),
    with an autoextend profile and dmeventd monitoring; optionally wires Docker, containerd or Podman to it.
  - With O(state=absent), removes the pool, and the VG and its PV labels when they held nothing else.
  - The built collection (C(packaging/build-collection)) carries the thinpool library as its module_utils,
    so the target needs only Python 3.11 or newer; C(python3-tomlkit) for O(engine=containerd-devmapper)
    and O(engine=podman-overlay-thin).
  - Every refusal of the library (a device in use, a conflicting pool, a broken engine config)
    fails the task with the problem and the fix; nothing is changed then.
options:
  state:
    description: V(present) creates or converges the pool; V(absent) destroys it.
    type: str
    choices: [present, absent]
    default: present
  devices:
    description: Whole disks or partitions for the volume group. Empty to use an existing O(vg) as it is.
    type: list
    elements: str
    default: []
  vg:
    description: Volume group; an existing one is used, and extended with any device given.
    type: str
    default: docker
  pool:
    description: Thin pool LV name.
    type: str
    default: thinpool
  engine:
    description: Container engine to wire to the pool.
    type: str
    choices: [none, docker-devicemapper, containerd-devmapper, docker-overlay2-thin, containerd-overlayfs-thin,
      podman-overlay-thin, docker-containerd-thin]
    default: none
  extent_size:
    description: Extent size of a new VG (binary units, e.g. V(4m)).
    type: str
    default: 4m
  chunk_size:
    description: >-
      Data chunk, a multiple of 64k in 64k..1g (default chosen by thinpool from measurements,
      128k with an engine and 512k without, larger when needed).
    type: str
  metadata_size:
    description: Pool metadata size (default sized by thinpool).
    type: str
  data_size:
    description: Pool data, a size or N%VG or N%FREE (default all that fits).
    type: str
  headroom:
    description: Free space kept in the VG, a size or N%VG; never less than one autoextend step.
    type: str
  max_pool_size:
    description: The most the pool may ever grow to; chunk and metadata are sized for it.
    type: str
  max_thin_devices:
    description: Image layers plus containers the metadata must hold.
    type: int
    default: 1000
  thin_device_size:
    description: Virtual size of one thin device (Docker's dm.basesize).
    type: str
    default: 10g
  autoextend_threshold:
    description: Grow when data or metadata is this full (50-99), or 100 to disable.
    type: int
    default: 80
  autoextend_percent:
    description: Grow by this share of the current size.
    type: int
    default: 20
  zero:
    description: Zero newly provisioned chunks.
    type: bool
    default: false
  wipe:
    description: Erase filesystem, RAID and partition-table signatures on O(devices) first. Destroys their data.
    type: bool
    default: false
  encrypt:
    description:
      - LUKS2 under each new PV, opened with O(key_file) now and at every boot (a line in C(/etc/crypttab)).
      - A device that already holds a LUKS header is never formatted again.
    type: bool
    default: false
  key_file:
    description:
      - With O(encrypt), the key. Made from the kernel's random source, mode 0400, when missing; never shown.
      - Default C(/etc/thinpool/keys/VG.key). Keep a copy off the host; without it the data is lost.
    type: str
  tpm2:
    description:
      - With O(encrypt), this machine's TPM2 opens the disks at boot (systemd-cryptenroll, sealed to PCR 7, the
        Secure Boot state); C(/etc/crypttab) names no key file. O(key_file) becomes the recovery key, read only
        when disks are formatted or added; keep it off the host.
      - Refused, before anything is formatted, where the kernel shows no TPM 2.0 or systemd-cryptenroll is missing.
    type: bool
    default: false
  erase_encryption:
    description:
      - With O(state=absent), also wipe every key slot of the LUKS headers O(encrypt) made under the removed VG,
        and the header copies kept beside the key; no key opens that data again. Without it the mappings are
        only closed.
    type: bool
    default: false
  layout:
    description:
      - How the data is laid over the disks. V(linear) (the default) fills one disk after another; V(striped)
        writes across O(stripes) disks in turn, for their bandwidth together; V(raid1) keeps two copies on two
        disks, so one may die, in half the space; V(raid10) keeps two copies striped over pairs of disks (4 or
        more). Only for a new pool; C(thinpool grow) keeps it.
    type: str
    choices: [linear, striped, raid1, raid10]
  metadata_layout:
    description:
      - How the metadata is laid, whose loss loses every thin volume. Default V(raid1) from two disks on (two
        copies of about 0.1% of the pool), V(linear) on one.
    type: str
    choices: [linear, raid1]
  stripes:
    description: With O(layout=striped), the disks to stripe over (default all); with V(raid10), the mirrored pairs.
    type: int
  stripe_size:
    description: With O(layout=striped) or V(raid10), the bytes written to each disk in turn (default C(64k)).
    type: str
  boot_check:
    description:
      - The metadata check lvm runs at each activation, boots included.
      - V(fast) writes C(thin_check --skip-mappings) host-wide in C(/etc/lvm/lvmlocal.conf), in a block marked
        as thinpool's (a full check has held boots for minutes); C(thinpool maintain) runs the full check weekly.
      - V(full) leaves lvm's check as it is, and takes thinpool's block out.
    type: str
    choices: [fast, full]
    default: fast
  base_size:
    description: Virtual size of each image or container device (dm.basesize, base_image_size).
    type: str
    default: 10g
  volume_size:
    description: For V(docker-overlay2-thin), the thin volume's virtual size (default the pool's data size).
    type: str
  data_root:
    description: For V(docker-overlay2-thin), where the thin volume is mounted.
    type: str
    default: /var/lib/docker
  storage_opts:
    description: For V(docker-devicemapper), more dm.KEY=VALUE storage options.
    type: list
    elements: str
    default: []
  hosts:
    description: Docker API sockets for daemon.json; TCP beyond loopback is refused without TLS.
    type: list
    elements: str
    default: []
  dns:
    description: DNS servers for containers.
    type: list
    elements: str
    default: []
  dns_cache:
    description:
      - A dnsmasq cache on the Docker bridge's address as the containers' DNS server (needs the C(dnsmasq) package).
      - Not together with O(dns).
    type: bool
    default: false
  tls_generate:
    description:
      - Make a CA, dockerd's certificate and a client bundle under C(/etc/thinpool/tls) and require client
        certificates on the API; kept across runs, remade 30 days before expiry.
      - Needs C(cryptography) on the target (Debian, Ubuntu - C(python3-cryptography)).
    type: bool
    default: false
  tls_sans:
    description: With O(tls_generate), more names or addresses for dockerd's certificate.
    type: list
    elements: str
    default: []
  force:
    description: Replace another storage driver or pool named in the engine's config (a backup is kept).
    type: bool
    default: false
  follow_links:
    description:
      - An engine config file that is a symbolic link is refused unless this is true; then its target is
        written atomically and the link is kept. A dangling link, or a drop-in masked as a link to /dev/null,
        is always refused.
    type: bool
    default: false
requirements:
  - python3 3.11 or newer, lvm2, thin-provisioning-tools and xfsprogs on the target
  - tomlkit on the target for O(engine=containerd-devmapper) and O(engine=podman-overlay-thin)
    (Debian, Ubuntu - C(python3-tomlkit))
author:
  - thinpool contributors
notes:
  - Supports check mode (the plan, nothing changed) and diff mode (the pool before and after).
  - Engines are never restarted; use RV(engine_changed) to restart them in a handler.
"""

EXAMPLES = r"""
- name: Thin pool for Docker on a dedicated disk
  thinpool.thinpool.thinpool:
    devices: [/dev/sdb]
    engine: docker-overlay2-thin

- name: See what would be done, change nothing
  thinpool.thinpool.thinpool:
    devices: [/dev/sdb]
  check_mode: true
  register: planned

- name: Remove the pool again
  thinpool.thinpool.thinpool:
    vg: docker
    pool: thinpool
    state: absent
"""

RETURN = r"""
plan:
  description: The plan thinpool made (schema_version 2), with every action's argv and reason.
  returned: always
  type: dict
result:
  description: What ran (schema_version 1), step by step; empty in check mode or when nothing changed.
  returned: always
  type: dict
layout:
  description: The pool's layout in extents and bytes (data, metadata, spare, autoextend room).
  returned: when state is present
  type: dict
engine_changed:
  description: Whether an engine's configuration or TLS files were (or would be) written; restart the engine then.
  returned: always
  type: bool
"""

import importlib.util  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

# packaging/build-collection rewrites "thinpool" in these imports to the copy of the library it puts
# in plugins/module_utils, which Ansible then sends to the target with the module.
try:
    from thinpool import engines
    from thinpool.app import planning, pool
    from thinpool.app.context import system_context
    from thinpool.core import changes, crypt, sizing
    from thinpool.core.boot_check import BootCheck
    from thinpool.core.layouts import DataLayout, MetadataLayout
    from thinpool.core.spec import OPTION_DEFAULTS, Encryption, EngineOptions, PoolSpec, normal_path
    from thinpool.core.units import parse_size, parse_size_or_percent
    from thinpool.engines import (  # noqa: F401 (loaded by name at run time; named here so they are sent)
        containerd_devmapper,
        containerd_overlayfs,
        docker_containerd,
        docker_devicemapper,
        docker_overlay2,
        podman_overlay,
        thin_volume,
    )
    from thinpool.errors import SpecError, ThinpoolError

    HAS_THINPOOL = True
    LOCK_WAIT = 10 * changes.DEFAULT_WAIT  # unattended: wait out a maintain pass or an operator's grow
    ENGINE_CHOICES = list(engines.CHOICES)
    DEFAULTS: dict[str, Any] = dict(OPTION_DEFAULTS)  # written once, in thinpool.core.spec
except ImportError:  # pragma: no cover - reported by the module before any default is used
    HAS_THINPOOL = False
    LOCK_WAIT = 0.0
    ENGINE_CHOICES = [
        "none",
        "docker-devicemapper",
        "containerd-devmapper",
        "docker-overlay2-thin",
        "containerd-overlayfs-thin",
        "podman-overlay-thin",
        "docker-containerd-thin",
    ]
    DEFAULTS = {}

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "devices": {"type": "list", "elements": "str", "default": []},
    "vg": {"type": "str", "default": DEFAULTS.get("vg")},
    "pool": {"type": "str", "default": DEFAULTS.get("pool")},
    "engine": {
        "type": "str",
        "choices": ENGINE_CHOICES,
        "default": DEFAULTS.get("engine"),
    },
    "extent_size": {"type": "str", "default": DEFAULTS.get("extent_size")},
    "chunk_size": {"type": "str"},
    "metadata_size": {"type": "str"},
    "data_size": {"type": "str"},
    "headroom": {"type": "str"},
    "max_pool_size": {"type": "str"},
    "max_thin_devices": {"type": "int", "default": DEFAULTS.get("max_thin_devices")},
    "thin_device_size": {"type": "str", "default": DEFAULTS.get("thin_device_size")},
    "autoextend_threshold": {"type": "int", "default": DEFAULTS.get("autoextend_threshold")},
    "autoextend_percent": {"type": "int", "default": DEFAULTS.get("autoextend_percent")},
    "zero": {"type": "bool", "default": False},
    "wipe": {"type": "bool", "default": False},
    "boot_check": {"type": "str", "choices": ["fast", "full"], "default": DEFAULTS.get("boot_check")},
    "layout": {"type": "str", "choices": ["linear", "striped", "raid1", "raid10"]},
    "metadata_layout": {"type": "str", "choices": ["linear", "raid1"]},
    "stripes": {"type": "int"},
    "stripe_size": {"type": "str"},
    "encrypt": {"type": "bool", "default": False},
    "erase_encryption": {"type": "bool", "default": False},
    "key_file": {"type": "str", "no_log": False},
    "tpm2": {"type": "bool", "default": False},
    "base_size": {"type": "str", "default": DEFAULTS.get("base_size")},
    "volume_size": {"type": "str"},
    "data_root": {"type": "str", "default": DEFAULTS.get("data_root")},
    "storage_opts": {"type": "list", "elements": "str", "default": []},
    "hosts": {"type": "list", "elements": "str", "default": []},
    "dns": {"type": "list", "elements": "str", "default": []},
    "dns_cache": {"type": "bool", "default": False},
    "tls_generate": {"type": "bool", "default": False},
    "tls_sans": {"type": "list", "elements": "str", "default": []},
    "force": {"type": "bool", "default": False},
    "follow_links": {"type": "bool", "default": False},
}


def _size(params: dict[str, Any], name: str) -> int | None:
    value = params[name]
    return None if value is None else parse_size(value, what=name)


def _share(params: dict[str, Any], name: str, allowed: tuple[str, ...]) -> Any:
    value = params[name]
    return None if value is None else parse_size_or_percent(value, what=name, allowed=allowed)


def _encryption(params: dict[str, Any]) -> Any:
    if not params["encrypt"]:
        if params["tpm2"]:
            raise SpecError("tpm2 opens what encrypt formats", fix="set encrypt: true, or leave tpm2 out")
        return None
    key_file = normal_path(params["key_file"]) if params["key_file"] else crypt.default_key_file(params["vg"])
    return Encryption(key_file, tpm2=params["tpm2"])


def _spec(params: dict[str, Any]) -> Any:
    """The PoolSpec the CLI builds from the same options."""
    return PoolSpec(
        devices=tuple(params["devices"]),
        vg=params["vg"],
        pool=params["pool"],
        engine=params["engine"],
        extent_size=parse_size(params["extent_size"], what="extent_size"),
        chunk_size=_size(params, "chunk_size"),
        metadata_size=_size(params, "metadata_size"),
        data_size=_share(params, "data_size", ("VG", "FREE")),
        headroom=_share(params, "headroom", ("VG",)),
        max_pool_size=_size(params, "max_pool_size"),
        workload=sizing.Workload(
            params["max_thin_devices"], parse_size(params["thin_device_size"], what="thin_device_size")
        ),
        autoextend=sizing.Autoextend(params["autoextend_threshold"], params["autoextend_percent"]),
        zero=params["zero"],
        wipe=params["wipe"],
        boot_check=BootCheck(params["boot_check"]),
        encryption=_encryption(params),
        layout=DataLayout(params["layout"]) if params["layout"] else None,
        metadata_layout=MetadataLayout(params["metadata_layout"]) if params["metadata_layout"] else None,
        stripes=params["stripes"],
        stripe_size=_size(params, "stripe_size"),
        engine_options=EngineOptions(
            base_size=parse_size(params["base_size"], what="base_size"),
            volume_size=_size(params, "volume_size"),
            data_root=normal_path(params["data_root"]),
            storage_opts=tuple(params["storage_opts"]),
            hosts=tuple(params["hosts"]),
            dns=tuple(params["dns"]),
            dns_cache=params["dns_cache"],
            tls_generate=params["tls_generate"],
            tls_sans=tuple(params["tls_sans"]),
            force=params["force"],
            follow_links=params["follow_links"],
        ),
    )


def _pool_text(observed: Any, vg: str, pool_name: str) -> str:
    group = observed.vgs.get(vg)
    lv = group.lv(pool_name) if group else None
    if lv is None:
        return ""
    return (
        f"{vg}/{pool_name}: data {lv.size} bytes, metadata {lv.metadata_size} bytes, chunk {lv.chunk_size} bytes, "
        f"profile {lv.profile or '-'}, {lv.seg_monitor or 'not monitored'}\n"
    )


def _after_text(plan: Any, before: str) -> str:
    if not plan.actions:
        return before
    if not plan.layout:
        return ""
    layout = plan.layout
    return (
        f"{plan.vg}/{plan.pool}: data {layout.data_size} bytes, metadata {layout.metadata_size} bytes, "
        f"chunk {layout.chunk_size} bytes, profile thinpool-{plan.vg}-{plan.pool}, monitored\n"
        + "".join(f"+ {action.op} {action.kind} {action.target}\n" for action in plan.actions)
    )


def _plan(module: AnsibleModule, ctx: Any, spec: Any, observed: Any) -> Any:
    if module.params["state"] == "present":
        return planning.plan_host(spec, observed)
    group = observed.vgs.get(spec.vg)
    if group is None or group.lv(spec.pool) is None:
        return None
    return pool.plan_destroy(ctx, spec, erase_encryption=module.params["erase_encryption"])


def run(module: AnsibleModule) -> dict[str, Any]:
    """Check mode only reads; a run that may change the host holds its change lock (core.changes) from before
    it reads the state it plans from, waiting for another thinpool command (a maintain pass, a grow)."""
    spec = _spec(module.params)
    ctx = system_context(json=True)
    if module.check_mode:
        return _converge(module, ctx, spec)
    with ctx.changing("apply (Ansible)", LOCK_WAIT):
        return _converge(module, ctx, spec)


def _converge(module: AnsibleModule, ctx: Any, spec: Any) -> dict[str, Any]:
    observed = pool.observed_for(ctx, spec)
    plan = _plan(module, ctx, spec, observed)
    before = _pool_text(observed, spec.vg, spec.pool)
    if plan is None:
        nothing = {"before": "", "after": ""}
        return {"changed": False, "plan": {}, "result": {}, "engine_changed": False, "diff": nothing}
    engine_changed = any(action.kind in ("engine-config", "systemd-drop-in", "tls") for action in plan.actions)
    answer = {
        "changed": plan.has_changes,
        "plan": plan.to_dict(),
        "layout": plan.layout_dict(),
        "engine_changed": engine_changed,
        "result": {},
        "diff": {"before": before, "after": _after_text(plan, before)},
    }
    if module.check_mode or not plan.has_changes:
        return answer
    result = pool.run(ctx, plan)
    answer["result"] = result.to_dict()
    if not result.ok:
        failed = next(step for step in result.steps if step.status == "failed")
        module.fail_json(
            msg=f"thinpool: {failed.action.op} {failed.action.kind} {failed.action.target} failed: {failed.error}",
            **answer,
        )
    return answer


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if not HAS_THINPOOL:
        module.fail_json(msg=missing_required_lib("thinpool (build the collection with packaging/build-collection)"))
    if module.params["tls_generate"] and importlib.util.find_spec("cryptography") is None:
        module.fail_json(
            msg=missing_required_lib(
                "cryptography (Debian, Ubuntu: apt install python3-cryptography)", reason="to make the TLS certificates"
            )
        )
    merges_toml = {"containerd-devmapper": "containerd's config.toml", "podman-overlay-thin": "storage.conf"}
    if module.params["engine"] in merges_toml and importlib.util.find_spec("tomlkit") is None:
        needed = missing_required_lib(
            "tomlkit (Debian, Ubuntu: apt install python3-tomlkit)",
            reason=f"to merge {merges_toml[module.params['engine']]}",
        )
        module.fail_json(msg=needed)
    try:
        answer = run(module)
    except ThinpoolError as error:
        module.fail_json(msg=f"thinpool: {error}", problem=error.problem, fix=error.fix)
    if not module._diff:
        answer.pop("diff")
    module.exit_json(**answer)


if __name__ == "__main__":
    main()
