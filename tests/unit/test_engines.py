"""Engine adapters, pure: config merging, refusals, and the actions they plan."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from dataclasses import replace

import pytest

from thinpool import engines
from thinpool.app import planning
from thinpool.core.model import EngineState, LogicalVolume, StoreRoot, virtual_disks
from thinpool.core.plan import ActionKind
from thinpool.core.spec import EngineOptions, PoolSpec
from thinpool.core.units import GiB
from thinpool.engines import (
    containerd_devmapper,
    containerd_overlayfs,
    docker,
    docker_devicemapper,
    docker_overlay2,
    podman_overlay,
    systemd,
    thin_volume,
)
from thinpool.engines.target import EngineChanges, PoolTarget
from thinpool.errors import SpecError

TARGET = PoolTarget("docker", "thinpool", 6 * GiB)
DOCKER = EngineState(observed=True, versions={"dockerd": "20.10.24"}, programs={"dockerd": "/usr/sbin/dockerd"})


def _spec(engine: str, **options: object) -> PoolSpec:
    return PoolSpec(devices=("/dev/vda",), engine=engine, engine_options=EngineOptions(**options))  # type: ignore[arg-type]


def _with_files(state: EngineState, **files: str) -> EngineState:
    paths = {
        "daemon_json": docker.DAEMON_JSON,
        "config_toml": containerd_devmapper.CONFIG_TOML,
        "fstab": docker_overlay2.FSTAB,
    }
    return EngineState(**{**state.__dict__, "files": {paths[name]: text for name, text in files.items()}})


def _written(changes: EngineChanges, path: str) -> str:
    return next(action.content for action in changes.actions if action.path == path)


def test_devicemapper_daemon_json_keeps_every_other_key() -> None:
    state = _with_files(DOCKER, daemon_json='{"log-driver": "journald", "storage-opts": ["dm.blkdiscard=false"]}')
    changes = docker_devicemapper.plan(_spec("docker-devicemapper"), TARGET, state)
    written = json.loads(_written(changes, docker.DAEMON_JSON))
    assert written["log-driver"] == "journald" and written["storage-driver"] == "devicemapper"
    assert written["storage-opts"][0] == "dm.blkdiscard=false"  # the operator's own option stays
    assert "dm.thinpooldev=/dev/mapper/docker-thinpool" in written["storage-opts"]
    assert {
        "dm.use_deferred_removal=true",
        "dm.use_deferred_deletion=true",
        "dm.fs=xfs",
        "dm.mountopt=noatime",
        "dm.basesize=10G",
        "dm.min_free_space=10%",
    } <= set(written["storage-opts"])
    again = _with_files(DOCKER, daemon_json=json.dumps(written))
    assert (
        docker.merged_daemon_json(
            docker.current_settings(again, False),
            "devicemapper",
            docker_devicemapper.storage_opts(_spec("docker-devicemapper"), TARGET, DOCKER),
            {},
            force=False,
        )
        is None
    )


def test_dashed_names_are_escaped_in_the_pool_path_and_the_unit() -> None:
    target = PoolTarget("vg-docker", "docker-pool", 6 * GiB)
    changes = docker_devicemapper.plan(_spec("docker-devicemapper"), target, DOCKER)
    assert "dm.thinpooldev=/dev/mapper/vg--docker-docker--pool" in _written(changes, docker.DAEMON_JSON)
    assert r"After=dev-mapper-vg\x2d\x2ddocker\x2ddocker\x2d\x2dpool.device" in _written(changes, docker.DOCKER_DROP_IN)


@pytest.mark.parametrize("path", ["/dev/mapper/docker-thinpool", "/var/lib/docker", "/a b/.c/ü", "/"])
def test_unit_names_match_systemd_escape(path: str) -> None:
    if shutil.which("systemd-escape") is None:
        pytest.skip("systemd-escape is not installed")
    expected = subprocess.run(["systemd-escape", "--path", path], capture_output=True, text=True, check=True)
    assert systemd.escape_path(path) == expected.stdout.strip()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"storage-driver": "overlay2",}', "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"storage-driver": "overlay2"}', "storage-driver 'overlay2'"),
        ('{"storage-opts": ["dm.thinpooldev=/dev/mapper/other-pool"]}', "another pool"),
    ],
)
def test_daemon_json_conflicts_are_refused_unless_forced(text: str, problem: str) -> None:
    state = _with_files(DOCKER, daemon_json=text)
    with pytest.raises(SpecError, match=problem) as caught:
        docker_devicemapper.plan(_spec("docker-devicemapper"), TARGET, state)
    assert "--force" in caught.value.fix or "repair" in caught.value.fix
    forced = docker_devicemapper.plan(_spec("docker-devicemapper", force=True), TARGET, state)
    written = json.loads(_written(forced, docker.DAEMON_JSON))
    assert written["storage-driver"] == "devicemapper"
    assert written["storage-opts"].count("dm.thinpooldev=/dev/mapper/docker-thinpool") == 1
    assert not any("other-pool" in option for option in written["storage-opts"])


def test_docker_25_has_no_devicemapper() -> None:
    state = EngineState(observed=True, versions={"dockerd": "25.0.3"})
    with pytest.raises(SpecError, match="removed in Docker 25") as caught:
        docker_devicemapper.plan(_spec("docker-devicemapper"), TARGET, state)
    assert "docker-overlay2-thin" in caught.value.fix
    assert docker_overlay2.plan(_spec("docker-overlay2-thin"), TARGET, state).actions  # the alternative works


def test_devicemapper_state_of_another_pool_is_refused() -> None:
    state = EngineState(**{**DOCKER.__dict__, "docker_devicemapper_state": True})
    with pytest.raises(SpecError, match="Unable to take ownership"):
        docker_devicemapper.plan(_spec("docker-devicemapper"), TARGET, state)
    ours = _with_files(state, daemon_json='{"storage-opts": ["dm.thinpooldev=/dev/mapper/docker-thinpool"]}')
    assert docker_devicemapper.plan(_spec("docker-devicemapper"), TARGET, ours).actions


def test_a_pool_with_lvm_thin_volumes_is_not_handed_to_an_engine() -> None:
    thin = LogicalVolume("vol1", "docker", "Vwi-a-tz--", GiB, segtype="thin", pool_lv="thinpool")
    target = PoolTarget("docker", "thinpool", 6 * GiB, (thin,))
    for module, engine in (
        (docker_devicemapper, "docker-devicemapper"),
        (containerd_devmapper, "containerd-devmapper"),
    ):
        with pytest.raises(SpecError, match="vol1"):
            module.plan(_spec(engine), target, DOCKER)


@pytest.mark.parametrize(
    ("hosts", "tls", "insecure", "outcome"),
    [
        (("tcp://0.0.0.0:2375",), False, False, "refused"),
        (("tcp://10.1.2.3:2375",), False, False, "refused"),
        (("tcp://127.0.0.1:2375", "unix:///run/docker.sock"), False, False, "ok"),
        (("tcp://[::1]:2375",), False, False, "ok"),
        (("tcp://0.0.0.0:2376",), True, False, "ok"),
        (("tcp://0.0.0.0:2375",), False, True, "warned"),
    ],
)
def test_tcp_api_beyond_loopback_needs_tls(hosts: tuple[str, ...], tls: bool, insecure: bool, outcome: str) -> None:
    options = EngineOptions(hosts=hosts, insecure_tcp=insecure)
    if tls:
        files = ("/etc/docker/ca.pem", "/etc/docker/cert.pem", "/etc/docker/key.pem")
        options = replace(options, tls_cacert=files[0], tls_cert=files[1], tls_key=files[2])
    if outcome == "refused":
        with pytest.raises(SpecError, match="without TLS"):
            docker.check_hosts(options)
        return
    warnings = docker.check_hosts(options)
    assert bool(warnings) == (outcome == "warned")
    keys = docker.api_keys(options)
    assert keys["hosts"] == list(hosts) and keys.get("tlsverify", False) == tls


def test_hosts_drop_dockerds_own_socket_flag() -> None:
    changes = docker_devicemapper.plan(_spec("docker-devicemapper", hosts=("unix:///run/docker.sock",)), TARGET, DOCKER)
    drop_in = _written(changes, docker.DOCKER_DROP_IN)
    assert "ExecStart=\nExecStart=/usr/sbin/dockerd\n" in drop_in  # else dockerd refuses hosts set twice


CONFIG_V2 = """# operator's comment
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
"""


@pytest.mark.parametrize("version", [2, 3])
def test_containerd_section_merged_with_comments_and_sections_kept(version: int) -> None:
    text = CONFIG_V2.replace("version = 2", f"version = {version}")
    state = _with_files(DOCKER, config_toml=text)
    changes = containerd_devmapper.plan(_spec("containerd-devmapper"), TARGET, state)
    written = _written(changes, containerd_devmapper.CONFIG_TOML)
    assert written.startswith("# operator's comment\n")
    data = tomllib.loads(written)
    assert data["version"] == version
    assert data["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert data["plugins"]["io.containerd.snapshotter.v1.devmapper"] == {
        "pool_name": "docker-thinpool",
        "root_path": containerd_devmapper.ROOT_PATH,
        "base_image_size": "10240MB",
        "discard_blocks": True,
        "fs_type": "xfs",
    }
    again = _with_files(DOCKER, config_toml=written)
    settings = containerd_devmapper.snapshotter_settings(_spec("containerd-devmapper"), TARGET)
    assert containerd_devmapper.merged_config(again, settings, force=False) is None


def test_new_containerd_config_takes_the_layout_of_the_installed_version() -> None:
    for found, version in (("1.6.20", 2), ("2.0.1", 3)):
        state = EngineState(observed=True, versions={"containerd": found})
        changes = containerd_devmapper.plan(_spec("containerd-devmapper"), TARGET, state)
        assert tomllib.loads(_written(changes, containerd_devmapper.CONFIG_TOML))["version"] == version


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[plugins.devmapper]\npool_name = 'x'\n", "version 1 layout"),
        ("version = 2\n[plugins\n", "not valid TOML"),
        ('version = 2\n[plugins."io.containerd.snapshotter.v1.devmapper"]\npool_name = "other"\n', "other"),
    ],
)
def test_containerd_config_problems_are_refused(text: str, problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        containerd_devmapper.plan(_spec("containerd-devmapper"), TARGET, _with_files(DOCKER, config_toml=text))


def test_overlay2_thin_plans_volume_filesystem_mount_and_config() -> None:
    state = _with_files(DOCKER, fstab="# /etc/fstab\nUUID=abc / ext4 defaults 0 1\n")
    changes = docker_overlay2.plan(_spec("docker-overlay2-thin", volume_size=4 * GiB), TARGET, state)
    kinds = [action.kind for action in changes.actions]
    assert kinds == ["thin-volume", "filesystem", "fstab", "mount", "engine-config", "systemd-drop-in"]
    assert changes.actions[0].argv == (
        "lvcreate",
        "--yes",
        "--type",
        "thin",
        "--virtualsize",
        "4g",
        "--thinpool",
        "thinpool",
        "--name",
        "docker-data",
        "--addtag",
        "thinpool.managed",
        "docker",
    )
    assert changes.actions[1].argv == ("mkfs.xfs", "-q", "-n", "ftype=1", "/dev/mapper/docker-docker--data")
    fstab = _written(changes, docker_overlay2.FSTAB)
    assert fstab.startswith("# /etc/fstab\nUUID=abc / ext4 defaults 0 1\n")
    assert "/dev/mapper/docker-docker--data /var/lib/docker xfs defaults,nofail,pquota,noatime 0 0" in fstab
    assert json.loads(_written(changes, docker.DAEMON_JSON)) == {"storage-driver": "overlay2"}
    assert "RequiresMountsFor=/var/lib/docker" in _written(changes, docker.DOCKER_DROP_IN)


def test_overlay2_thin_never_hides_an_existing_data_root() -> None:
    full = EngineState(**{**DOCKER.__dict__, "roots": {"/var/lib/docker": StoreRoot(entries=7)}})
    with pytest.raises(SpecError, match="holds 7 entries") as caught:
        docker_overlay2.plan(_spec("docker-overlay2-thin"), TARGET, full)
    assert "mv /var/lib/docker" in caught.value.fix
    other = EngineState(**{**DOCKER.__dict__, "roots": {"/var/lib/docker": StoreRoot(source="/dev/sdc1")}})
    with pytest.raises(SpecError, match="/dev/sdc1 is already mounted"):
        docker_overlay2.plan(_spec("docker-overlay2-thin"), TARGET, other)
    fstab = _with_files(DOCKER, fstab="/dev/sdc1 /var/lib/docker ext4 defaults 0 2\n")
    with pytest.raises(SpecError, match="already mounts /dev/sdc1"):
        docker_overlay2.plan(_spec("docker-overlay2-thin"), TARGET, fstab)


def test_overlay2_thin_converged_plans_nothing() -> None:
    volume = LogicalVolume("docker-data", "docker", "Vwi-aotz--", 6 * GiB, segtype="thin", pool_lv="thinpool")
    target = PoolTarget("docker", "thinpool", 6 * GiB, (volume,))
    first = docker_overlay2.plan(_spec("docker-overlay2-thin"), TARGET, DOCKER)
    files = {action.path: action.content for action in first.actions if action.path}
    done = EngineState(
        **{
            **DOCKER.__dict__,
            "files": files,
            "roots": {"/var/lib/docker": StoreRoot("/dev/mapper/docker-docker--data", 0, "xfs")},
        }
    )
    assert docker_overlay2.plan(_spec("docker-overlay2-thin"), target, done).actions == ()


def test_engine_actions_follow_the_pool_in_the_plan() -> None:
    spec = _spec("docker-devicemapper")
    plan = planning.plan_host(spec, virtual_disks([8 * GiB], ["/dev/vda"]))
    kinds = [action.kind for action in plan.actions]
    assert kinds.index(ActionKind.THIN_POOL) < kinds.index(ActionKind.ENGINE_CONFIG)
    assert plan.next_steps and "systemctl restart docker" in plan.next_steps[0]
    assert not any("not found" in warning for warning in plan.warnings)  # nothing was read on virtual disks


def test_invalid_daemon_json_beside_devicemapper_state_is_refused_as_invalid_json() -> None:
    """It used to be refused as 'devices of another pool': the file was never parsed as such."""
    state = _with_files(DOCKER, daemon_json='{"storage-driver": "devicemapper",')
    state = EngineState(**{**state.__dict__, "docker_devicemapper_state": True})
    with pytest.raises(SpecError, match="is not valid JSON") as refused:
        docker_devicemapper.plan(_spec("docker-devicemapper"), TARGET, state)
    assert "another pool" not in refused.value.problem


def test_an_unreadable_daemon_json_is_refused_even_with_force() -> None:
    state = EngineState(**{**DOCKER.__dict__, "unreadable": {docker.DAEMON_JSON: "Permission denied"}})
    with pytest.raises(SpecError, match="cannot be read"):
        docker_devicemapper.plan(_spec("docker-devicemapper", force=True), TARGET, state)


def test_the_registry_names_every_engine_once_and_their_files() -> None:
    from thinpool import engines

    assert engines.CHOICES == (
        "none",
        "docker-devicemapper",
        "containerd-devmapper",
        "docker-overlay2-thin",
        "containerd-overlayfs-thin",
        "podman-overlay-thin",
        "docker-containerd-thin",
    )
    assert all(isinstance(engines.adapter(name), engines.EngineAdapter) for name in engines.NAMES)
    assert engines.config_files() == (
        docker.DAEMON_JSON,
        docker.DOCKER_DROP_IN,
        docker.DNSMASQ_CONF,
        docker.DNSMASQ_DEFAULTS,
        containerd_devmapper.CONFIG_TOML,
        containerd_devmapper.CONTAINERD_DROP_IN,
        docker_overlay2.FSTAB,
        podman_overlay.STORAGE_CONF,
    )
    with pytest.raises(SpecError, match="unknown engine 'podman'"):
        engines.adapter("podman")


@pytest.mark.parametrize(
    ("engine", "options", "disk", "warned"),
    [
        ("containerd-devmapper", {}, 8 * GiB, True),  # a 10 GiB snapshot on a pool that can reach ~7 GiB
        ("containerd-devmapper", {"base_size": 2 * GiB}, 8 * GiB, False),
        ("docker-devicemapper", {}, 8 * GiB, True),
        ("docker-devicemapper", {}, 64 * GiB, False),
        ("docker-overlay2-thin", {"volume_size": 100 * GiB}, 8 * GiB, True),
        ("docker-overlay2-thin", {}, 8 * GiB, False),  # the volume is the pool's size by default
    ],
)
def test_a_device_larger_than_the_pool_can_ever_grow_is_warned_of(
    engine: str, options: dict[str, object], disk: int, warned: bool
) -> None:
    plan = planning.plan_host(_spec(engine, **options), virtual_disks([disk], ["/dev/vda"]))
    beyond = [warning for warning in plan.warnings if "can ever hold" in warning]
    assert bool(beyond) == warned, plan.warnings
    if warned:
        assert "thinpool grow" in beyond[0]


def test_each_engine_fails_fast_when_the_pool_is_full() -> None:
    """devicemapper: Docker's own XFS knob where udev runs; overlay2-thin: the knobs set before dockerd starts."""
    with_udev = EngineState(**{**DOCKER.__dict__, "udev": True})
    for state, knob in ((with_udev, True), (DOCKER, False)):  # without udev Docker would fail every container
        changes = docker_devicemapper.plan(_spec("docker-devicemapper"), TARGET, state)
        assert (
            "dm.xfs_nospace_max_retries=0" in json.loads(_written(changes, docker.DAEMON_JSON))["storage-opts"]
        ) is knob
    drop_in = _written(docker_overlay2.plan(_spec("docker-overlay2-thin"), TARGET, DOCKER), docker.DOCKER_DROP_IN)
    (line,) = [line for line in drop_in.splitlines() if line.startswith("ExecStartPre=")]
    assert line.endswith(" xfs-errors /var/lib/docker")
    assert "echo 0 > $$d/ENOSPC/max_retries" in line and "echo 30 > $$d/EIO/retry_timeout_seconds" in line
    toml = tomllib.loads(
        _written(
            containerd_devmapper.plan(_spec("containerd-devmapper"), TARGET, EngineState()),
            containerd_devmapper.CONFIG_TOML,
        )
    )
    assert toml["plugins"]["io.containerd.snapshotter.v1.devmapper"]["discard_blocks"] is True


def test_devicemapper_with_discards_off_is_a_finding() -> None:
    state = _with_files(
        DOCKER,
        daemon_json=json.dumps(
            {
                **json.loads(
                    _written(docker_devicemapper.plan(_spec("docker-devicemapper"), TARGET, DOCKER), docker.DAEMON_JSON)
                ),
                "storage-opts": [
                    "dm.thinpooldev=/dev/mapper/docker-thinpool",
                    "dm.use_deferred_removal=true",
                    "dm.blkdiscard=false",
                ],
            }
        ),
    )
    from thinpool.engines import doctor

    found = doctor(state, "docker", "thinpool")
    assert [finding.code for finding in found] == ["discard-off"]


def _docker(version: str, daemon_json: str | None = None, **fields: object) -> EngineState:
    state = EngineState(**{**DOCKER.__dict__, "versions": {"dockerd": version}, **fields})
    return _with_files(state, daemon_json=daemon_json) if daemon_json is not None else state


def test_overlay2_thin_refuses_the_containerd_store_and_pins_the_classic_one_where_it_is_the_default() -> None:
    spec = _spec("docker-overlay2-thin")
    on = _docker("26.1.5", '{"features": {"containerd-snapshotter": true, "cdi": true}}')
    with pytest.raises(SpecError, match="containerd image store") as caught:
        docker_overlay2.plan(spec, TARGET, on)
    assert "/var/lib/containerd" in str(caught.value) and "--force" in caught.value.fix
    forced = json.loads(
        _written(docker_overlay2.plan(_spec("docker-overlay2-thin", force=True), TARGET, on), docker.DAEMON_JSON)
    )
    assert forced == {"features": {"containerd-snapshotter": False, "cdi": True}, "storage-driver": "overlay2"}
    fresh_29 = json.loads(_written(docker_overlay2.plan(spec, TARGET, _docker("29.1.0")), docker.DAEMON_JSON))
    assert fresh_29 == {"storage-driver": "overlay2", "features": {"containerd-snapshotter": False}}
    assert json.loads(_written(docker_overlay2.plan(spec, TARGET, _docker("26.1.5")), docker.DAEMON_JSON)) == {
        "storage-driver": "overlay2"  # before 29 the classic store is the default: nothing more is written
    }


def test_doctor_finds_the_containerd_store_on_a_host_wired_for_the_classic_store() -> None:
    data_root = StoreRoot("/dev/mapper/docker-docker--data")
    mounted = {"roots": {"/var/lib/docker": data_root}}
    broken = _docker(
        "26.1.5", '{"storage-driver": "overlay2", "features": {"containerd-snapshotter": true}}', **mounted
    )
    (finding,) = [f for f in docker.doctor(broken, TARGET) if f.code == "docker-store-mismatch"]
    assert finding.severity == "critical" and "snapshotter not loaded: overlay2" in finding.problem
    assert "--engine docker-overlay2-thin" in finding.fix and "--force" in finding.fix
    outside = _docker("26.1.5", '{"features": {"containerd-snapshotter": true}}', **mounted)
    (finding,) = [f for f in docker.doctor(outside, TARGET) if f.code == "engine-data-outside-pool"]
    assert finding.severity == "warning" and "/var/lib/containerd" in finding.problem
    fresh_29 = _docker("29.1.0", "{}", **mounted)  # no storage-driver: Docker 29 picks the containerd store
    assert "engine-data-outside-pool" in {f.code for f in docker.doctor(fresh_29, TARGET)}
    on_the_pool = _docker(
        "26.1.5",
        '{"features": {"containerd-snapshotter": true}}',
        roots={"/var/lib/docker": data_root, "/var/lib/containerd": StoreRoot("/dev/mapper/docker-containerd--data")},
    )
    classic = _docker("29.1.0", '{"storage-driver": "overlay2"}', **mounted)
    for sound in (on_the_pool, classic):
        assert not {"docker-store-mismatch", "engine-data-outside-pool"} & {
            f.code for f in docker.doctor(sound, TARGET)
        }


def test_containerd_overlayfs_thin_puts_containerds_root_on_a_thin_volume() -> None:
    containerd = EngineState(observed=True, versions={"containerd": "1.7.24"}, systemd=True)
    changes = containerd_overlayfs.plan(_spec("containerd-overlayfs-thin"), TARGET, containerd)
    assert [action.kind for action in changes.actions] == [
        "thin-volume",
        "filesystem",
        "fstab",
        "mount",
        "systemd-drop-in",
        "systemd",
    ]
    assert changes.actions[0].target.lv == "containerd-data" and not changes.warnings
    fstab = _written(changes, thin_volume.FSTAB)
    assert "/dev/mapper/docker-containerd--data /var/lib/containerd xfs defaults,nofail,pquota,noatime 0 0" in fstab
    drop_in = _written(changes, containerd_devmapper.CONTAINERD_DROP_IN)
    assert "RequiresMountsFor=/var/lib/containerd" in drop_in and "xfs-errors /var/lib/containerd" in drop_in
    assert changes.next_steps[0].endswith("systemctl restart containerd")
    elsewhere = _with_files(containerd, config_toml='version = 2\nroot = "/srv/containerd"\n')
    moved = containerd_overlayfs.plan(_spec("containerd-overlayfs-thin", volume_name="ctr"), TARGET, elsewhere)
    assert "/dev/mapper/docker-ctr /srv/containerd xfs" in _written(moved, thin_volume.FSTAB)
    assert not any(action.path == containerd_devmapper.CONFIG_TOML for action in moved.actions)  # read, not written
    with pytest.raises(SpecError, match=r"config\.toml") as caught:
        containerd_overlayfs.plan(_spec("containerd-overlayfs-thin"), TARGET, _with_files(containerd, config_toml="["))
    assert "repair /etc/containerd/config.toml" in caught.value.fix
    busy = EngineState(**{**containerd.__dict__, "roots": {"/var/lib/containerd": StoreRoot(entries=3)}})
    with pytest.raises(SpecError, match="/var/lib/containerd already holds 3 entries") as caught:
        containerd_overlayfs.plan(_spec("containerd-overlayfs-thin"), TARGET, busy)
    assert caught.value.fix.startswith("stop containerd")


def test_containerd_overlayfs_thin_converged_plans_nothing() -> None:
    containerd = EngineState(observed=True, versions={"containerd": "1.7.24"})
    first = containerd_overlayfs.plan(_spec("containerd-overlayfs-thin"), TARGET, containerd)
    volume = LogicalVolume("containerd-data", "docker", "Vwi-aotz--", 6 * GiB, segtype="thin", pool_lv="thinpool")
    files = {action.path: action.content for action in first.actions if action.path}
    done = EngineState(
        **{
            **containerd.__dict__,
            "files": files,
            "roots": {"/var/lib/containerd": StoreRoot("/dev/mapper/docker-containerd--data", 0, "xfs")},
        }
    )
    target = PoolTarget("docker", "thinpool", 6 * GiB, (volume,))
    assert containerd_overlayfs.plan(_spec("containerd-overlayfs-thin"), target, done).actions == ()


STORAGE_CONF_OF_AN_OPERATOR = """\
# my storage settings
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/srv/containers"

[storage.options]
pull_options = {enable_partial_images = "false"}
"""


def test_podman_overlay_thin_puts_graphroot_on_a_thin_volume_and_merges_storage_conf() -> None:
    podman = EngineState(observed=True, versions={"podman": "5.4.2"})
    changes = podman_overlay.plan(_spec("podman-overlay-thin"), TARGET, podman)
    kinds = [action.kind for action in changes.actions]
    assert kinds == ["thin-volume", "filesystem", "fstab", "mount", "engine-config"] and not changes.warnings
    assert changes.actions[0].target.lv == "containers-data"
    fstab = _written(changes, thin_volume.FSTAB)
    assert "/dev/mapper/docker-containers--data /var/lib/containers/storage xfs defaults,nofail,pquota,noatime" in fstab
    written = tomllib.loads(_written(changes, podman_overlay.STORAGE_CONF))
    assert written == {
        "storage": {
            "runroot": "/run/containers/storage",
            "graphroot": "/var/lib/containers/storage",
            "driver": "overlay",
        }
    }
    theirs = EngineState(**{**podman.__dict__, "files": {podman_overlay.STORAGE_CONF: STORAGE_CONF_OF_AN_OPERATOR}})
    kept = podman_overlay.plan(_spec("podman-overlay-thin"), TARGET, theirs)
    assert not any(action.path == podman_overlay.STORAGE_CONF for action in kept.actions)  # overlay already: kept
    assert "/dev/mapper/docker-containers--data /srv/containers xfs" in _written(kept, thin_volume.FSTAB)
    vfs = STORAGE_CONF_OF_AN_OPERATOR.replace('driver = "overlay"', 'driver = "vfs"')
    other = EngineState(**{**podman.__dict__, "files": {podman_overlay.STORAGE_CONF: vfs}})
    with pytest.raises(SpecError, match="sets driver 'vfs'") as caught:
        podman_overlay.plan(_spec("podman-overlay-thin"), TARGET, other)
    assert "--force" in caught.value.fix
    switched = _written(
        podman_overlay.plan(_spec("podman-overlay-thin", force=True), TARGET, other), podman_overlay.STORAGE_CONF
    )
    assert switched == STORAGE_CONF_OF_AN_OPERATOR  # every other byte, the comment and the options kept
    broken = EngineState(**{**podman.__dict__, "files": {podman_overlay.STORAGE_CONF: "[storage\n"}})
    with pytest.raises(SpecError, match="is not valid TOML"):
        podman_overlay.plan(_spec("podman-overlay-thin"), TARGET, broken)
    (finding,) = podman_overlay.doctor(broken, TARGET)
    assert finding.code == "storage-conf-invalid" and "--engine podman-overlay-thin" in finding.fix


def test_docker_containerd_thin_puts_both_roots_on_volumes_of_their_own_and_turns_the_store_on() -> None:
    from thinpool.engines import docker_containerd

    state = _docker("26.1.5", '{"storage-driver": "overlay2", "log-driver": "journald"}')
    changes = docker_containerd.plan(_spec("docker-containerd-thin"), TARGET, state)
    created = [action.target.lv for action in changes.actions if action.kind == "thin-volume"]
    assert created == ["docker-data", "containerd-data"]
    (fstab,) = [action for action in changes.actions if action.kind == "fstab"]  # one write, both entries
    assert " /var/lib/docker xfs " in fstab.content and " /var/lib/containerd xfs " in fstab.content
    mounts = [action.target.path for action in changes.actions if action.kind == "mount"]
    assert mounts == ["/var/lib/docker", "/var/lib/containerd"]
    written = json.loads(_written(changes, docker.DAEMON_JSON))
    assert written == {"log-driver": "journald", "features": {"containerd-snapshotter": True}}  # no storage-driver
    assert "RequiresMountsFor=/var/lib/containerd" in _written(changes, containerd_devmapper.CONTAINERD_DROP_IN)
    assert "RequiresMountsFor=/var/lib/docker" in _written(changes, docker.DOCKER_DROP_IN)
    devicemapper = _docker("20.10.24", '{"storage-driver": "devicemapper"}')
    with pytest.raises(SpecError, match="would hide its images") as refused:
        docker_containerd.plan(_spec("docker-containerd-thin"), TARGET, devicemapper)
    assert "--force" in refused.value.fix
    roots = {
        "/var/lib/docker": StoreRoot("/dev/mapper/docker-docker--data", 0, "xfs"),
        "/var/lib/containerd": StoreRoot("/dev/mapper/docker-containerd--data", 0, "xfs"),
    }
    volumes = tuple(
        LogicalVolume(name, "docker", "Vwi-aotz--", 6 * GiB, segtype="thin", pool_lv="thinpool")
        for name in ("docker-data", "containerd-data")
    )
    files = {action.path: action.content for action in changes.actions if action.path}
    done = EngineState(**{**state.__dict__, "files": {**state.files, **files}, "roots": roots})
    target = PoolTarget("docker", "thinpool", 6 * GiB, volumes)
    assert docker_containerd.plan(_spec("docker-containerd-thin"), target, done).actions == ()
    assert not {f.code for f in docker.doctor(done, TARGET)} & {"engine-data-outside-pool", "docker-store-mismatch"}


ON_ROOT = StoreRoot(entries=3, on_root_filesystem=True)  # three entries, on the filesystem mounted at /
ON_A_VOLUME = StoreRoot(entries=3)


def _outside(state: EngineState) -> list[str]:
    """The engine-data-outside-pool problems every adapter's doctor finds in ``state``."""
    found = engines.doctor(state, TARGET.vg, TARGET.pool)
    return [finding.problem for finding in found if finding.code == "engine-data-outside-pool"]


def test_data_folders_follow_each_engines_config() -> None:
    configured = EngineState(
        files={
            docker.DAEMON_JSON: '{"data-root": "/srv/docker"}',
            containerd_devmapper.CONFIG_TOML: 'version = 2\nroot = "/srv/containerd"\n',
            podman_overlay.STORAGE_CONF: '[storage]\ndriver = "overlay"\ngraphroot = "/srv/containers"\n',
        }
    )
    assert set(engines.data_folders(configured)) == {
        "/srv/docker/overlay2/l",
        "/srv/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots",
        "/srv/containers/overlay/l",
    }
    assert set(engines.data_folders(EngineState())) == {
        "/var/lib/docker/overlay2/l",
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots",
        "/var/lib/containers/storage/overlay/l",
    }
    broken = EngineState(files={podman_overlay.STORAGE_CONF: "[storage\n", containerd_devmapper.CONFIG_TOML: "= x"})
    assert engines.data_folders(broken) == ("/var/lib/docker/overlay2/l",)  # their own findings name the files


@pytest.mark.parametrize(
    ("folder", "who"),
    [
        ("/var/lib/docker/overlay2/l", "Docker keeps 3 image and container layers in /var/lib/docker"),
        ("/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots", "containerd keeps 3 overlayfs"),
        ("/var/lib/containers/storage/overlay/l", "containers-storage (Podman, Buildah, CRI-O) keeps 3 layers"),
    ],
)
def test_doctor_finds_an_engines_data_on_the_root_filesystem_and_not_on_a_volume(folder: str, who: str) -> None:
    (problem,) = _outside(EngineState(roots={folder: ON_ROOT}))
    assert problem.startswith(who) and "on the root filesystem" in problem
    assert _outside(EngineState(roots={folder: ON_A_VOLUME})) == []  # under a mount: on its thin volume
    assert _outside(EngineState(roots={folder: StoreRoot(on_root_filesystem=True)})) == []  # nothing kept there
    (finding,) = [f for f in engines.doctor(EngineState(roots={folder: ON_ROOT}), "vg", "p") if f.severity]
    assert finding.severity == "warning" and "--vg vg --pool p" in finding.fix and ".old" in finding.fix


def test_dockers_containerd_store_is_named_once_by_dockers_own_rule() -> None:
    snapshots = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"
    roots = {"/var/lib/docker": StoreRoot("/dev/mapper/docker-docker--data"), snapshots: ON_ROOT}
    state = _docker("26.1.5", '{"features": {"containerd-snapshotter": true}}', roots=roots)
    (problem,) = _outside(state)
    assert problem.startswith("Docker uses the containerd image store")
    layers = _docker(
        "26.1.5",
        '{"features": {"containerd-snapshotter": true}}',
        roots={docker.layer_links("/var/lib/docker"): ON_ROOT},
    )
    assert _outside(layers) == []  # the classic store's links are not its data while the containerd store is on
