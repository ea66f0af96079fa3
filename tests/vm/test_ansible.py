"""The Ansible module run by real ansible-playbook (connection local) inside the VM."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from thinpool.rehearse.vm import SHARE_MOUNT, VM

from .conftest import unavailable

pytestmark = pytest.mark.vm
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
        dest: {share}/ansible-results.json
        content: "{{{{ dict(planned=planned, after_check=after_check.stdout, made=made, again=again,
                   refused=refused, removed=removed, removed_again=removed_again) | to_json }}}}"
"""


def test_ansible_playbook_present_check_idempotent_refused_absent(vm: VM) -> None:
    playbook_cli = Path(sys.executable).parent / "ansible-playbook"
    if not playbook_cli.exists() and shutil.which("ansible-playbook") is None:
        unavailable("ansible-core is not installed (pip install -e '.[test]')")
    (vm.share / "site.yml").write_text(PLAYBOOK.format(python=sys.executable, share=SHARE_MOUNT))
    vm.run(["mkfs.ext4", "-q", "-F", "/dev/vde"])
    env = {"ANSIBLE_COLLECTIONS_PATH": str(REPO), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
           "ANSIBLE_LOCAL_TEMP": "/tmp/ansible-local", "ANSIBLE_HOME": "/tmp/ansible-home"}  # fmt: skip
    done = vm.run([str(playbook_cli), "-i", "localhost,", f"{SHARE_MOUNT}/site.yml"], env=env, check=False, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((vm.share / "ansible-results.json").read_text())
    for name in ("site.yml", "ansible-results.json"):
        (vm.share / name).unlink()
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
HIDDEN_TOMLKIT = ("/usr/lib/python3/dist-packages/tomlkit", "/tmp/tomlkit.hidden")  # in the guest's overlay only


def test_the_built_collection_runs_on_a_target_with_only_debians_python(vm: VM) -> None:
    """ansible-galaxy builds and installs it; the module runs on /usr/bin/python3 with nothing pip-installed."""
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    playbook_cli = Path(sys.executable).parent / "ansible-playbook"
    if not galaxy.exists():
        unavailable("ansible-core is not installed (pip install -e '.[test]')")
    built = subprocess.run([str(REPO / "packaging/build-collection"), "--out", str(vm.share)], capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    tarball = f"{SHARE_MOUNT}/{Path(built).name}"
    bare = ["env", "-u", "PYTHONPATH", "LC_ALL=C.UTF-8", "LANG=C.UTF-8", "ANSIBLE_HOME=/tmp/ansible-home",
            "ANSIBLE_LOCAL_TEMP=/tmp/ansible-local", "ANSIBLE_COLLECTIONS_PATH=/tmp/collections"]  # fmt: skip
    nothing = vm.run([*bare, "/usr/bin/python3", "-c", "import thinpool"], check=False)
    assert "No module named 'thinpool'" in nothing.stderr  # the target has no thinpool library of its own
    vm.run([*bare, str(galaxy), "collection", "install", tarball, "-p", "/tmp/collections"], timeout=300)
    (vm.share / "bare.yml").write_text(BARE_PLAYBOOK.format(share=SHARE_MOUNT))
    vm.run(["mv", *HIDDEN_TOMLKIT])
    try:
        done = vm.run([*bare, str(playbook_cli), "-i", "localhost,", f"{SHARE_MOUNT}/bare.yml"], check=False,
                      timeout=900)  # fmt: skip
    finally:
        vm.run(["mv", *reversed(HIDDEN_TOMLKIT)])
        (vm.share / Path(built).name).unlink()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((vm.share / "bare-results.json").read_text())
    for name in ("bare.yml", "bare-results.json"):
        (vm.share / name).unlink()
    assert results["made"]["changed"] and results["made"]["result"]["ok"] and results["made"]["engine_changed"]
    assert results["again"]["changed"] is False  # the second run reports no change
    refused = results["without_tomlkit"]
    assert refused["failed"] and "tomlkit" in refused["msg"] and "python3-tomlkit" in refused["msg"]
    assert json.loads(vm.run(["cat", "/etc/docker/daemon.json"]).stdout)["storage-driver"] == "overlay2"
