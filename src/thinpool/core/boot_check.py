"""Which thin_check lvm runs when it activates a pool, boots included: what apply writes to lvmlocal.conf. Pure.

lvm checks a pool's metadata with ``thin_check`` and ``global/thin_check_options`` at every activation. The
full check walks every thin device's mappings and has held boots for minutes (docs/benchmarks: thin_check at
activation); ``--skip-mappings`` checks the superblock, the device tree and the space maps in a fraction of
that. lvm has no per-pool or profile setting for it, so the fast check is set host-wide, in lvm's local
config file, inside a block thinpool marks as its own: ``--boot-check fast`` (the default) writes the block
with the host's other options kept, ``--boot-check full`` takes it out again. The full check still runs,
weekly, in ``thinpool maintain`` on a snapshot of the live metadata (``core.metadata_check``).

A ``global`` section the operator wrote in that file is never edited: lvm reads the first of two sections of
one name, so the plan refuses and says what to add there instead.
"""

from __future__ import annotations

import re
from enum import StrEnum

from thinpool.core import metadata_check
from thinpool.core.model import LvmLocal
from thinpool.errors import SpecError

LVMLOCAL = "/etc/lvm/lvmlocal.conf"  # read after lvm.conf; Debian ships it with only comments and ``local {}``
BEGIN = "# thinpool (begin):"
END = "# thinpool (end)"
BLOCK_COMMENT = (
    f"{BEGIN} lvm's check at each activation, boots included, reads the metadata's structure only;\n"
    "# thinpool maintain runs the full check weekly on a snapshot of the live metadata.\n"
    "# Taken out by: thinpool apply ... --boot-check full\n"
)
_GLOBAL_SECTION = re.compile(r"^\s*global\s*(\{|$)")


class BootCheck(StrEnum):
    FAST = "fast"  # thin_check --skip-mappings at activation; the full check weekly in maintain
    FULL = "full"  # lvm's own options, untouched: the full check at every activation


def has_block(text: str) -> bool:
    return BEGIN in text and END in text


def without_block(text: str) -> str:
    """``text`` with thinpool's block (its lines from BEGIN to END) taken out, every other line kept."""
    kept: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        if line.startswith(BEGIN):
            inside = True
        elif inside and line.startswith(END):
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


def block(options: tuple[str, ...] | None) -> str:
    """The block: the host's options without thinpool's, plus --skip-mappings."""
    return f"{BLOCK_COMMENT}global {{\n\t{metadata_check.fast_options_line(options)}\n}}\n{END}\n"


def _user_global_section(text: str) -> bool:
    return any(_GLOBAL_SECTION.match(line) for line in text.splitlines())


def wanted_text(local: LvmLocal, check: BootCheck) -> str | None:
    """What lvmlocal.conf must hold for ``check``; None when it already does."""
    current = local.text or ""
    base = without_block(current)
    if check is BootCheck.FULL:
        return base if has_block(current) else None
    if metadata_check.fast_at_boot(local.options):
        return None  # the fast check is on: thinpool's block, or the operator's own setting
    if _user_global_section(base):
        raise SpecError(
            f"{LVMLOCAL} has a global section of its own: thinpool will not edit it, and a second one is ignored",
            fix=f"add to that section: {metadata_check.fast_options_line(local.options)}; "
            "or keep lvm's full check at every boot with --boot-check full",
        )
    separator = "" if not base or base.endswith("\n") else "\n"
    return base + separator + block(local.options)


def reason(check: BootCheck) -> str:
    if check is BootCheck.FULL:
        return "--boot-check full: take thinpool's fast-check block out; lvm checks all the metadata at each boot"
    return (
        "host-wide: lvm's check at each activation skips the mapping trees (a full check has held boots for "
        "minutes); thinpool maintain runs the full check weekly on a metadata snapshot"
    )
