"""What the rehearsal VM needs on the host, and installing it with apt when asked.

Usage as a script (CI): ``python -m thinpool.rehearse.deps --install [--engines]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from thinpool.core.programs import argv as programs
from thinpool.errors import MissingTool
from thinpool.system.runner import Runner

# program -> Debian package. On this host's root the guest runs the host's own binaries over 9p; a
# pinned release's root (--release) is built with mmdebstrap and keeps its state disk on ext4.
VM_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "busybox": "busybox-static",
    "depmod": "kmod",
    "modprobe": "kmod",
    "lvm": "lvm2",
    "dmeventd": "dmeventd",
    "thin_check": "thin-provisioning-tools",
    "mkfs.xfs": "xfsprogs",
    "lsblk": "util-linux",
    "wipefs": "util-linux",
    "fuser": "psmisc",  # repair names the processes holding a thin volume
}
# The engines, systemd-analyze to verify the units thinpool writes for them, and the monitoring
# stack its metrics and rules are proven against (promtool, Prometheus, node_exporter), and dnsmasq.
ENGINE_TOOLS = {
    "dockerd": "docker.io",
    "containerd": "containerd",
    "runc": "runc",
    "tini": "tini",
    "systemd-analyze": "systemd",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "dnsmasq": "dnsmasq",  # --dns-cache: the containers' DNS cache
    "swtpm": "swtpm",  # the emulated TPM 2.0 an encrypted pool's boot unlocks with (--tpm2)
}
# The Debian package's tests: lintian checks it, and Debian's python3 runs it in the VM on
# Debian's own libraries (a module's folder under DEBIAN_PYTHON stands for its package).
PACKAGE_TOOLS = {"lintian": "lintian", "dpkg-deb": "dpkg"}
DEBIAN_PYTHON = Path("/usr/lib/python3/dist-packages")
DEBIAN_MODULES = {"tomlkit": "python3-tomlkit", "prometheus_client": "python3-prometheus-client",
                  "cryptography": "python3-cryptography"}  # fmt: skip
POLICY_RC = Path("/usr/sbin/policy-rc.d")
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def missing(engines: bool = False) -> dict[str, str]:
    wanted = {**VM_TOOLS, **({**ENGINE_TOOLS, **PACKAGE_TOOLS} if engines else {})}
    absent = {tool: package for tool, package in wanted.items() if shutil.which(tool, path=SEARCH_PATH) is None}
    if engines:
        absent |= {
            f"python3 module {name}": package
            for name, package in DEBIAN_MODULES.items()
            if not (DEBIAN_PYTHON / name).is_dir()
        }
    return absent


def require(engines: bool = False) -> None:
    absent = missing(engines)
    if absent:
        packages = " ".join(sorted(set(absent.values())))
        raise MissingTool(
            f"the rehearsal VM needs {', '.join(sorted(absent))}",
            fix=f"apt-get install --no-install-recommends {packages}  (or pass --install-deps)",
        )


def install(runner: Runner, engines: bool = False) -> list[str]:
    """apt-get install what is missing; daemons stay stopped on the host (policy-rc.d)."""
    packages = sorted(set(missing(engines).values()))
    if not packages:
        return []
    if not POLICY_RC.exists():
        POLICY_RC.write_text(
            "#!/bin/sh\n# thinpool: keep daemons installed for the rehearsal VM stopped here\nexit 101\n"
        )
        POLICY_RC.chmod(0o755)
    runner.run(programs.apt_update(), timeout=900)
    runner.run(
        programs.apt_install(tuple(packages)),
        timeout=1800,
        input="",
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )
    require(engines)
    return packages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m thinpool.rehearse.deps", description=__doc__)
    parser.add_argument("--install", action="store_true", help="apt-get install what is missing")
    parser.add_argument(
        "--engines", action="store_true", help="also the engines, systemd, and what the Debian package's tests need"
    )
    args = parser.parse_args(argv)
    if args.install:
        from thinpool.app.context import system_context

        installed = install(system_context().runner, args.engines)
        print("installed: " + (" ".join(installed) if installed else "nothing (all present)"))
        return 0
    absent = missing(args.engines)
    for tool, package in sorted(absent.items()):
        print(f"missing: {tool} (package {package})")
    return 1 if absent else 0


if __name__ == "__main__":
    sys.exit(main())
