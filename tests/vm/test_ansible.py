"""The Ansible collection, built by packaging/build-collection, installed by the release's own ansible-galaxy and
run by its ansible-playbook (connection local) inside the VM, on the release's /usr/bin/python3."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from thinpool.rehearse.vm import SHARE_MOUNT, VM
from thinpool.system.runner import Completed

pytestmark = [pytest.mark.vm, pytest.mark.releases("debian-12", "debian-13", ci="debian-13")]
REPO = Path(__file__).parents[2]

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: {python}
    pool: {{devices: [/dev/vda], autoextend_threshold: 70}}
  tasks:
    - name: Plan only
      thinpool.thinpool.thinpool: "{{{{ pool }}}}"
      check_mode: true
      diff: true
      register: planned
    - name: What check mode left
      ansible.builtin.command: pvs --noheadings -o pv_name
      register: after_check
      changed_when: false
    - name: Present
      thinpool.thinpool.thinpool: "{{{{ pool }}}}"
      register: made
    - name: Present again
      thinpool.thinpool.thinpool: "{{{{ pool }}}}"
      diff: true
      register: again
    - name: A disk with a filesystem is refused
      thinpool.thinpool.thinpool: {{vg: other, devices: [/dev/vde]}}
      register: refused
      ignore_errors: true
    - name: Absent
      thinpool.thinpool.thinpool: {{state: absent}}
      register: removed
    - name: Absent again
      thinpool.thinpool.thinpool: {{state: absent}}
      register: removed_again
    - name: Keep what each step said
      ansible.builtin.copy:
        dest: {share}/site-results.json
        content: "{{{{ dict(planned=planned, after_check=after_check.stdout, made=made, again=again,
                   refused=refused, removed=removed, removed_again=removed_again) | to_json }}}}"
"""


GALAXY, PLAYBOOK_CLI = "/usr/bin/ansible-galaxy", "/usr/bin/ansible-playbook"  # the release's ansible-core
BARE = ["env", "-u", "PYTHONPATH", "LC_ALL=C.UTF-8", "LANG=C.UTF-8", "ANSIBLE_HOME=/tmp/ansible-home",
        "ANSIBLE_LOCAL_TEMP=/tmp/ansible-local", "ANSIBLE_COLLECTIONS_PATH=/tmp/collections"]  # fmt: skip


def _install_collection(vm: VM) -> None:
    built = subprocess.run(
        [str(REPO / "packaging/build-collection"), "--out", str(vm.share)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        vm.run(
            [
                *BARE,
                GALAXY,
                "collection",
                "install",
                "--force",
                f"{SHARE_MOUNT}/{Path(built).name}",
                "-p",
                "/tmp/collections",
            ],
            timeout=300,
        )
    finally:
        (vm.share / Path(built).name).unlink()


def _playbook(vm: VM, name: str, text: str) -> tuple[Completed, dict[str, Any]]:
    (vm.share / f"{name}.yml").write_text(text)
    done = vm.run([*BARE, PLAYBOOK_CLI, "-i", "localhost,", f"{SHARE_MOUNT}/{name}.yml"], check=False, timeout=900)
    results = vm.share / f"{name}-results.json"
    found = json.loads(results.read_text()) if results.exists() else {}
    for path in (vm.share / f"{name}.yml", results):
        path.unlink(missing_ok=True)
    return done, found


def test_ansible_playbook_present_check_idempotent_refused_absent(vm: VM) -> None:
    _install_collection(vm)
    vm.run(["mkfs.ext4", "-q", "-F", "/dev/vde"])
    done, results = _playbook(vm, "site", PLAYBOOK.format(python=vm.python_path, share=SHARE_MOUNT))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    planned = results["planned"]
    assert planned["changed"] and planned["result"] == {}
    assert [action["kind"] for action in planned["plan"]["actions"]][:2] == ["physical-volume", "volume-group"]
    assert "+ create thin-pool docker/thinpool" in planned["diff"]["after"] and planned["diff"]["before"] == ""
    assert results["after_check"].strip() == ""  # check mode touched nothing
    assert results["made"]["changed"] and results["made"]["result"]["ok"]
    assert (
        results["again"]["changed"] is False and results["again"]["diff"]["before"] == results["again"]["diff"]["after"]
    )
    refused = results["refused"]
    assert refused["failed"] and "ext4" in refused["msg"] and "fix:" in refused["msg"]
    assert results["removed"]["changed"] and results["removed_again"]["changed"] is False
    assert vm.run(["vgs", "--noheadings"]).stdout.strip() == ""


BARE_PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: /usr/bin/python3
    pool: {{devices: [/dev/vda], engine: docker-overlay2-thin, volume_size: 1GiB}}
  tasks:
    - name: Present, with the engine wired
      thinpool.thinpool.thinpool: "{{{{ pool }}}}"
      register: made
    - name: Present again
      thinpool.thinpool.thinpool: "{{{{ pool }}}}"
      register: again
    - name: containerd without tomlkit on the target
      thinpool.thinpool.thinpool: {{vg: docker, engine: containerd-devmapper}}
      register: without_tomlkit
      ignore_errors: true
    - name: Keep what each step said
      ansible.builtin.copy:
        dest: {share}/bare-results.json
        content: "{{{{ dict(made=made, again=again, without_tomlkit=without_tomlkit) | to_json }}}}"
"""
# In the guest's overlay only: Debian's tomlkit, and the thinpool package the VM installed at boot.
HIDDEN = (("/usr/lib/python3/dist-packages/tomlkit", "/tmp/tomlkit.hidden"),
          ("/usr/lib/python3/dist-packages/thinpool", "/tmp/thinpool.hidden"))  # fmt: skip


@pytest.mark.sweep  # CI installs the same built collection and runs its playbook in the test above
def test_the_built_collection_runs_on_a_target_with_only_debians_python(vm: VM) -> None:
    """The module runs on /usr/bin/python3 with nothing pip-installed and no thinpool library of its own."""
    _install_collection(vm)
    for hidden in HIDDEN:
        vm.run(["mv", *hidden])
    try:
        nothing = vm.run([*BARE, "/usr/bin/python3", "-c", "import thinpool"], check=False)
        assert "No module named 'thinpool'" in nothing.stderr  # the target has no thinpool library of its own
        done, results = _playbook(vm, "bare", BARE_PLAYBOOK.format(share=SHARE_MOUNT))
    finally:
        for hidden in HIDDEN:
            vm.run(["mv", *reversed(hidden)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert results["made"]["changed"] and results["made"]["result"]["ok"] and results["made"]["engine_changed"]
    assert results["again"]["changed"] is False  # the second run reports no change
    refused = results["without_tomlkit"]
    assert refused["failed"] and "tomlkit" in refused["msg"] and "python3-tomlkit" in refused["msg"]
    assert json.loads(vm.run(["cat", "/etc/docker/daemon.json"]).stdout)["storage-driver"] == "overlay2"
