"""Reading lvm's report as hosts grow: ``lvm fullreport`` JSON of N LVs spread over M VGs, parsed as
observation parses it (PVs, LVs with their first segments, VGs assembled). Pure Python, no lvm: run it on
the host.

    python3 -m benchmarks.report_scale [--lvs 100000] [--vgs 1 10 100 1000]

The time should depend on the LVs alone, not on how many VGs hold them (it was quadratic before: 100,000
LVs over 1,000 VGs took about 16 s against 1.3 s in one VG).
"""

from __future__ import annotations

import argparse
import json
import time

from thinpool.core.lvm import report

GiB = 1 << 30


def fullreport(lvs: int, vgs: int) -> str:
    """One report section per VG, as ``lvm fullreport`` prints them."""
    sections = []
    for group in range(vgs):
        name = f"vg{group}"
        count = lvs // vgs + (1 if group < lvs % vgs else 0)
        sections.append(
            {
                "vg": [_vg(name, count)],
                "pv": [{"pv_name": f"/dev/vd{group}", "vg_name": name, "pv_size": str(64 * GiB)}],
                "lv": [_lv(name, index) for index in range(count)],
                "seg": [{"lv_uuid": f"{name}-{index}", "segtype": "thin", "pool_lv": "pool"} for index in range(count)],
            }
        )
    return json.dumps({"report": sections})


def _vg(name: str, count: int) -> dict[str, str]:
    return {
        "vg_name": name,
        "vg_extent_size": str(4 << 20),
        "vg_extent_count": "16384",
        "vg_free_count": "1024",
        "vg_seqno": str(count),
        "vg_uuid": name,
    }


def _lv(vg: str, index: int) -> dict[str, str]:
    return {
        "lv_name": f"lv{index}",
        "vg_name": vg,
        "lv_uuid": f"{vg}-{index}",
        "lv_size": str(GiB),
        "lv_attr": "Vwi-a-tz--",
    }


def seconds_to_read(text: str) -> float:
    started = time.perf_counter()
    pvs = report.parse_pvs(text)
    lvs = report.parse_lvs(text)
    report.assemble_vgs(text, pvs, lvs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lvs", type=int, default=100_000)
    parser.add_argument("--vgs", type=int, nargs="+", default=[1, 10, 100, 1000])
    args = parser.parse_args()
    print(f"{'LVs':>8} {'VGs':>6} {'seconds':>8}  per 1,000 LVs")
    for vgs in args.vgs:
        text = fullreport(args.lvs, vgs)
        report._parsed.cache_clear()
        took = seconds_to_read(text)
        print(f"{args.lvs:>8} {vgs:>6} {took:>8.2f}  {took * 1000 / args.lvs * 1000:.1f} ms")


if __name__ == "__main__":
    main()
