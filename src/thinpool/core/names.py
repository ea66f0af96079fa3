"""lvm2's name rules, mirrored in one place and used for every name thinpool passes to lvm.

From lvm2's lib/misc/lvm-string.c (2.03): ``_validate_name`` (characters, a leading hyphen,
"." and "..", NAME_LEN), ``_lvname_has_reserved_prefix`` and ``_lvname_has_reserved_string``
(the component suffixes and the two extra ones); from lib/metadata/metadata.c
``validate_new_vg_name`` (a new VG's /dev/NAME must not exist). Device-mapper names carry
every hyphen doubled and must fit DM_NAME_LEN.
"""

from __future__ import annotations

import re

from thinpool.core.lvm.commands import dm_name
from thinpool.errors import SpecError

NAME_MAX = 127  # lvm2's NAME_LEN is 128 with the terminating NUL
DM_NAME_MAX = 127  # device-mapper's DM_NAME_LEN is 128 with the terminating NUL
RESERVED_PREFIXES = ("pvmove", "snapshot")
RESERVED_PARTS = (
    "_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_wcorig", "_mimage", "_mlog", "_rimage", "_rmeta",
    "_tdata", "_tmeta", "_vdata", "_imeta", "_iorig", "_pmspare", "_vorigin",
)  # fmt: skip
# What lvm makes of a thin pool's name: its hidden sub-volumes, and the layer of its mapping.
POOL_SUB_VOLUMES = ("_tmeta", "_tdata")
POOL_LAYER = "-tpool"
# What the kernel and udev make under /dev on every host: lvm refuses a new VG whose /dev/NAME exists,
# and a plan on virtual disks (which reads nothing) must refuse them too.
DEV_FOLDERS = frozenset(
    {"block", "bsg", "bus", "char", "cpu", "disk", "dri", "fd", "hugepages", "input", "mapper", "mqueue", "net",
     "pts", "shm", "snd", "stderr", "stdin", "stdout", "vfio", "virtio-ports", "console", "null", "zero"}
)  # fmt: skip
_CHARACTERS = r"[A-Za-z0-9+_.-]+"  # compiled by re on first use, not at import
_CHARSET_FIX = "use letters, digits and + _ . - (not starting with -), at most 127 characters"


def check_name(name: str, *, what: str) -> None:
    """lvm2's ``_validate_name``: the rule for VG and LV names alike."""
    if not name:
        raise SpecError(f"{what} name is empty", fix=_CHARSET_FIX)
    if name.startswith("-"):
        raise SpecError(f"{what} name {name!r} starts with a hyphen (lvm reads it as an option)", fix=_CHARSET_FIX)
    if name in (".", ".."):
        raise SpecError(f"{what} name {name!r} is not a valid lvm name", fix=_CHARSET_FIX)
    if not re.fullmatch(_CHARACTERS, name):
        raise SpecError(f"{what} name {name!r} is not a valid lvm name (it has other characters)", fix=_CHARSET_FIX)
    if len(name) > NAME_MAX:
        raise SpecError(f"{what} name is {len(name)} characters, more than lvm's {NAME_MAX}", fix=_CHARSET_FIX)


def check_lv_name(name: str, *, what: str) -> None:
    """An LV name: lvm2's rule plus its reserved prefixes and parts."""
    check_name(name, what=what)
    prefix = next((prefix for prefix in RESERVED_PREFIXES if name.startswith(prefix)), "")
    if prefix:
        raise SpecError(
            f"{what} name {name!r} starts with {prefix!r}, which lvm reserves",
            fix="pick a name that does not start with pvmove or snapshot",
        )
    part = next((part for part in RESERVED_PARTS if part in name), "")
    if part:
        raise SpecError(
            f"{what} name {name!r} contains {part!r}, which lvm reserves for hidden volumes",
            fix="pick a name without " + ", ".join(RESERVED_PARTS),
        )


def _check_dm_name(vg: str, lv: str, *, what: str) -> None:
    mapped = dm_name(vg, lv)
    if len(mapped) > DM_NAME_MAX:
        raise SpecError(
            f"{what}'s device-mapper name {mapped[:40]}... is {len(mapped)} characters (every '-' doubled), "
            f"more than device-mapper's {DM_NAME_MAX}",
            fix="shorten the VG or LV name, or use fewer hyphens",
        )


def check_pool(vg: str, pool: str) -> None:
    """The VG and pool names, and every name lvm derives from them, as lvm would accept them."""
    check_name(vg, what="volume group")
    check_lv_name(pool, what="pool")
    for suffix in POOL_SUB_VOLUMES:
        if len(pool + suffix) > NAME_MAX:
            raise SpecError(
                f"pool name is {len(pool)} characters: lvm's {pool[:20]}...{suffix} would be longer than {NAME_MAX}",
                fix=f"use a pool name of at most {NAME_MAX - len(suffix)} characters",
            )
        _check_dm_name(vg, pool + suffix, what="the pool")
    _check_dm_name(vg, pool, what="the pool")
    if len(dm_name(vg, pool)) + len(POOL_LAYER) > DM_NAME_MAX:
        raise SpecError(
            f"the pool's mapping {dm_name(vg, pool)[:40]}...{POOL_LAYER} would be longer than "
            f"device-mapper's {DM_NAME_MAX} characters",
            fix="shorten the VG or pool name",
        )


def check_volume(vg: str, pool: str, volume: str) -> None:
    """A thin volume thinpool creates in the pool (docker-overlay2-thin's)."""
    check_lv_name(volume, what="thin volume")
    if volume == pool:
        raise SpecError(f"thin volume name {volume!r} is the pool's own name", fix="pick another --volume-name")
    _check_dm_name(vg, volume, what="the thin volume")


def check_target(text: str) -> tuple[str, str]:
    """A VG/POOL argument (status, doctor, metrics), checked before it reaches lvm's argv."""
    vg, slash, pool = text.partition("/")
    if not slash or not vg or not pool:
        raise SpecError(f"{text!r} is not VG/POOL", fix="e.g. docker/thinpool")
    check_name(vg, what="volume group")
    check_name(pool, what="pool")
    return vg, pool
