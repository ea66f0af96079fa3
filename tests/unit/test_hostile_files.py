"""Bad input, round 3: hostile config files, links, odd values and lvm reports of shapes lvm never prints.

Each ends in a refusal naming the problem and the fix with every file untouched, or in a merge that keeps
every byte thinpool does not own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thinpool.app import planning
from thinpool.app.context import Context
from thinpool.cli import main
from thinpool.config import containerd_toml, daemon_json, fstab
from thinpool.core import planner
from thinpool.core.lvm import report
from thinpool.core.model import EngineState, Observed, Source, virtual_disks
from thinpool.core.plan import ABSENT, Plan
from thinpool.core.spec import EngineOptions, PoolSpec
from thinpool.core.units import GiB, parse_size, parse_span
from thinpool.engines import containerd_devmapper, docker
from thinpool.engines.target import PoolTarget
from thinpool.errors import SpecError, ThinpoolError
from thinpool.system import observe_engine
from thinpool.testing import ScriptedRunner

from .test_bad_input import _refused

DAEMON_JSON = docker.DAEMON_JSON
CONFIG_TOML = containerd_devmapper.CONFIG_TOML
DROP_IN = docker.DOCKER_DROP_IN
TARGET = PoolTarget("docker", "thinpool", 6 * GiB)


def _plan(engine: str, state: EngineState, **options: object) -> Plan:
    observed = Observed(devices=virtual_disks([8 * GiB], ["/dev/vda"]).devices, engine=state)
    spec = PoolSpec(devices=("/dev/vda",), engine=engine, engine_options=EngineOptions(**options))  # type: ignore[arg-type]
    return planning.plan_host(spec, observed)


def _written(plan: Plan, path: str) -> str:
    return next(action.content for action in plan.actions if action.path == path)


# 1. daemon.json


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"max-concurrent-downloads": NaN}', "NaN is not a JSON number"),
        ('{"max-concurrent-downloads": Infinity}', "Infinity is not a JSON number"),
        ('{"max-concurrent-downloads": -Infinity}', "-Infinity is not a JSON number"),
        ('{"max-concurrent-downloads": 1e400}', "beyond what a JSON number can hold"),
        ('{"log-driver": "journald", "labels": ["caf\udce9"]}', "is not UTF-8"),
        ('{"bip": "1' + "9" * 5000 + '/16"}', "bip"),  # a long string: read, then refused by --dns-cache's check
    ],
    ids=["nan", "infinity", "minus-infinity", "1e400", "not-utf-8", "long-bip"],
)
def test_daemon_json_that_dockerd_refuses_is_refused_untouched(text: str, words: str) -> None:
    state = EngineState(observed=True, files={DAEMON_JSON: text})
    with pytest.raises(SpecError, match=words) as refused:
        _plan("docker-overlay2-thin", state, dns_cache=True)
    assert refused.value.fix


def test_a_crlf_daemon_json_stays_crlf_and_keeps_its_characters() -> None:
    text = '{\r\n  "log-driver": "journald",\r\n  "labels": ["café", "日本"]\r\n}\r\n'
    content = _written(
        _plan("docker-overlay2-thin", EngineState(observed=True, files={DAEMON_JSON: text})), DAEMON_JSON
    )
    assert content.count("\r\n") == content.count("\n") and content.endswith("}\r\n")
    assert '"café"' in content and '"日本"' in content
    assert json.loads(content)["labels"] == ["café", "日本"]


@pytest.mark.parametrize("bip", ["172.17.0.1/16\nlisten-address=0.0.0.0", "172.17.0.1", "not-an-address/16", "::1/x"])
def test_a_bip_that_is_not_an_interface_never_reaches_dnsmasq(bip: str) -> None:
    state = EngineState(observed=True, files={DAEMON_JSON: json.dumps({"bip": bip})})
    with pytest.raises(SpecError, match=r"bip .* is not an address with a prefix length") as refused:
        _plan("docker-overlay2-thin", state, dns_cache=True)
    assert "left untouched" in refused.value.problem


def test_a_bip_with_its_prefix_gives_dnsmasq_its_address() -> None:
    state = EngineState(observed=True, files={DAEMON_JSON: json.dumps({"bip": "10.9.0.1/24"})})
    assert "listen-address=10.9.0.1\n" in _written(
        _plan("docker-overlay2-thin", state, dns_cache=True), docker.DNSMASQ_CONF
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# Keys thinpool does not check the shape of (a wrong shape in one it checks is refused: tested above).
foreign_keys = st.text(min_size=1).filter(lambda key: key not in daemon_json.CHECKED_KEYS)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(foreign_keys, json_values, max_size=6), st.booleans())
def test_every_key_thinpool_does_not_own_survives_the_merge(theirs: dict[str, object], crlf: bool) -> None:
    text = json.dumps(theirs, indent=4).replace("\n", "\r\n" if crlf else "\n")
    content = _written(
        _plan("docker-overlay2-thin", EngineState(observed=True, files={DAEMON_JSON: text})), DAEMON_JSON
    )
    merged = daemon_json.parse(Source(DAEMON_JSON, content))
    assert isinstance(merged, daemon_json.DaemonJson)
    assert {key: merged.data[key] for key in theirs} == theirs
    assert list(merged.data)[: len(theirs)] == list(theirs)  # their order first, thinpool's keys after
    assert ("\r\n" in content) == (crlf and "\n" in text)


# 2. Links


def _linked(path: str, target: str, exists: bool = True, text: str = "{}") -> EngineState:
    return EngineState(
        observed=True,
        files={path: text} if exists and target != "/dev/null" else {},
        unreadable={path: "not a regular file"} if target == "/dev/null" else {},
        links={path: (target, exists)},
    )


def test_a_linked_daemon_json_is_refused_unless_the_operator_says_follow() -> None:
    state = _linked(DAEMON_JSON, "/srv/shared/daemon.json")
    with pytest.raises(ThinpoolError, match=r"is a symbolic link to /srv/shared/daemon\.json") as refused:
        _plan("docker-overlay2-thin", state, force=True)
    assert "--follow-links" in refused.value.fix
    followed = _plan("docker-overlay2-thin", state, follow_links=True)
    write = next(action for action in followed.actions if action.path == DAEMON_JSON)
    assert write.through_link == "/srv/shared/daemon.json" and "its target /srv/shared/daemon.json" in write.reason


def test_a_dangling_link_is_refused_even_when_following_links() -> None:
    with pytest.raises(ThinpoolError, match="which does not exist"):
        _plan("docker-overlay2-thin", _linked(DAEMON_JSON, "/nowhere/daemon.json", exists=False), follow_links=True)


def test_a_masked_drop_in_is_refused_before_anything_is_written() -> None:
    state = EngineState(
        observed=True,
        systemd=True,
        unreadable={DROP_IN: "not a regular file"},
        links={DROP_IN: ("/dev/null", True)},
    )
    with pytest.raises(ThinpoolError, match="masked") as refused:
        _plan("docker-overlay2-thin", state, follow_links=True)
    assert "unmask" in refused.value.fix


def test_observation_sees_links_and_their_targets(tmp_path: Path) -> None:
    (tmp_path / "etc/docker").mkdir(parents=True)
    (tmp_path / "etc/docker/daemon.json").symlink_to("/nowhere/daemon.json")
    (tmp_path / "etc/fstab").write_text("")
    state = observe_engine.engine_files(tmp_path)
    assert state.links == {DAEMON_JSON: ("/nowhere/daemon.json", False)}
    assert DAEMON_JSON not in state.files


def test_every_write_records_what_its_file_held() -> None:
    state = EngineState(observed=True, files={DAEMON_JSON: "{}\n"})
    writes = [action for action in _plan("docker-overlay2-thin", state).actions if action.op == "write"]
    assert {action.path: action.expect[:7] for action in writes if action.path == DAEMON_JSON} == {
        DAEMON_JSON: "sha256:"
    }
    others = [action for action in writes if action.path in (fstab.PATH, DROP_IN)]
    assert len(others) == 2 and all(action.expect == ABSENT for action in others)


def test_apply_refuses_a_daemon_json_edited_while_it_waited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole path: the plan is made from one text, the file is edited before the step, the edit is kept."""
    from thinpool.app import executor

    config = tmp_path / "etc/docker/daemon.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"log-driver": "journald"}\n')
    state = observe_engine.engine_files(tmp_path)
    plan = _plan("docker-devicemapper", state)
    config.write_text('{"log-driver": "local"}\n')
    writes = tuple(action for action in plan.actions if action.path == DAEMON_JSON)
    result = executor.apply(dataclasses.replace(plan, actions=writes), ScriptedRunner(), root=tmp_path)
    assert not result.ok and config.read_text() == '{"log-driver": "local"}\n'


# 3. config.toml


@pytest.mark.parametrize(
    "text",
    [
        "version = 2\nplugins = {}\n",
        'version = 2\nplugins = { "io.containerd.snapshotter.v1.devmapper" = { pool_name = "docker-thinpool" } }\n',
        'version = 2\n[plugins]\n"io.containerd.snapshotter.v1.devmapper" = { discard_blocks = true }\n',
        "version = 2\r\n# ours\r\n[plugins]\r\n  [plugins.other]\r\n    a = 1\r\n",
    ],
)
def test_config_toml_of_every_table_form_is_merged_and_keeps_its_bytes(text: str) -> None:
    content = _written(
        _plan("containerd-devmapper", EngineState(observed=True, files={CONFIG_TOML: text})), CONFIG_TOML
    )
    parsed = containerd_toml.parse(Source(CONFIG_TOML, content))
    assert isinstance(parsed, containerd_toml.ContainerdConfig)
    assert parsed.devmapper["pool_name"] == "docker-thinpool" and parsed.devmapper["fs_type"] == "xfs"
    if "\r\n" in text:
        assert content.count("\r\n") == content.count("\n") and content.startswith("version = 2\r\n# ours\r\n")


def test_a_disabled_snapshotter_is_warned_of_in_the_plan_and_by_doctor() -> None:
    text = f'version = 2\ndisabled_plugins = ["{containerd_devmapper.PLUGIN}"]\n'
    state = EngineState(observed=True, files={CONFIG_TOML: text}, versions={"containerd": "1.7.24"})
    plan = _plan("containerd-devmapper", state)
    assert any("disabled_plugins" in warning for warning in plan.warnings)
    found = containerd_devmapper.doctor(state, TARGET)
    assert [finding.code for finding in found] == ["snapshotter-disabled"]


def test_an_imported_drop_in_with_another_pool_is_refused_and_one_with_ours_makes_a_user(tmp_path: Path) -> None:
    (tmp_path / "etc/containerd/conf.d").mkdir(parents=True)
    (tmp_path / "etc/containerd/config.toml").write_text('version = 2\nimports = ["conf.d/*.toml"]\n')
    section = '[plugins."io.containerd.snapshotter.v1.devmapper"]\npool_name = "{}"\n'
    drop_in = tmp_path / "etc/containerd/conf.d/pool.toml"
    drop_in.write_text("version = 2\n" + section.format("other-pool"))
    with pytest.raises(SpecError, match=r"conf\.d/pool\.toml, which .* imports, gives the devmapper snapshotter pool"):
        _plan("containerd-devmapper", observe_engine.engine_files(tmp_path), force=True)
    drop_in.write_text("version = 2\n" + section.format("docker-thinpool"))
    state = observe_engine.engine_files(tmp_path)
    assert containerd_devmapper.pool_users(state, TARGET) == ("/etc/containerd/conf.d/pool.toml",)


def test_fs_type_of_the_same_pool_is_not_changed_silently() -> None:
    text = 'version = 2\n[plugins."io.containerd.snapshotter.v1.devmapper"]\npool_name = "docker-thinpool"\nfs_type = "ext4"\n'
    state = EngineState(observed=True, files={CONFIG_TOML: text})
    with pytest.raises(SpecError, match="fs_type = 'ext4'"):
        _plan("containerd-devmapper", state)
    assert 'fs_type = "xfs"' in _written(_plan("containerd-devmapper", state, force=True), CONFIG_TOML)


# 4. fstab

ROOT = "/var/lib/docker"
THEIRS = "/dev/sdz1 {} xfs defaults 0 0\n"


@pytest.mark.parametrize(
    "written", ["//var/lib/docker", "/var/lib/./docker", "/var/lib/docker/", r"/var/lib/dock\145r"]
)
def test_an_entry_for_the_data_root_written_another_way_is_the_same_entry(written: str) -> None:
    state = EngineState(observed=True, files={fstab.PATH: THEIRS.format(written)})
    with pytest.raises(SpecError, match="already mounts /dev/sdz1 on /var/lib/docker"):
        _plan("docker-overlay2-thin", state)
    content = _written(_plan("docker-overlay2-thin", state, force=True), fstab.PATH)
    assert [line for line in content.splitlines() if "/var/lib" in line and not line.startswith("#")] == [
        f"/dev/mapper/docker-docker--data {ROOT} xfs defaults,nofail,pquota,noatime 0 0"
    ]


fstab_lines = st.lists(st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=40), max_size=8)


@settings(max_examples=200, deadline=None)
@given(fstab_lines, st.sampled_from(["\n", "\r\n"]))
def test_every_fstab_line_thinpool_does_not_own_comes_back_byte_for_byte(lines: list[str], ending: str) -> None:
    text = "".join(line + ending for line in lines if fstab.normal(next(iter(line.split()[1:2]), "")) != ROOT)
    parsed = fstab.parse(Source(fstab.PATH, text))
    assert isinstance(parsed, fstab.Fstab) and "".join(parsed.lines) == text
    assert parsed.appended("# x", "y").startswith(text)


def test_form_feed_and_line_separators_are_not_line_ends() -> None:
    text = "UUID=a / ext4 defaults 0 1\x0c# comment\u2028still the same line\n/dev/b /srv xfs defaults 0 0\n"
    parsed = fstab.parse(Source(fstab.PATH, text))
    assert isinstance(parsed, fstab.Fstab) and len(parsed.lines) == 2
    assert [entry.mount_point for entry in parsed.entries()] == ["/", "/srv"]


# 5. Values


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--data-root", '/var/lib/"docker"'], "will not write into a unit file"),
        (["--data-root", "/var/lib/docker%i"], "will not write into a unit file"),
        (["--data-root", "/var/lib/dock\\x20er"], "will not write into a unit file"),
        (["--data-root", "/var/lib/docker\x07"], "will not write into a unit file"),
        (["--host", "tcp://127.0.0.1:2375\nExecStartPre=/bin/true"], "does not take in a unit file"),
        (["--host", "unix:///run/docker.sock'"], "does not take in a unit file"),
        (["--host", "tcp://127.0.0.1:2375%0a"], "does not take in a unit file"),
        (["--volume-size", "0b"], "must be more than 0"),
        (["--volume-size", "1000b"], "not a whole number of 512-byte sectors"),
        (["--volume-size", "9" * 5000 + "GiB"], "5000 digits"),
        (["--base-size", "²GiB"], "cannot read"),
        (["--vg", "mapper"], "/dev/mapper already exists"),
    ],
)
def test_odd_values_are_refused_before_anything_is_planned(
    options: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(["plan", "--disk-size", "4GiB", "--engine", "docker-overlay2-thin", *options], capsys, words)


@pytest.mark.parametrize(("text", "words"), [("²", "not a time span"), ("1" * 5000, "digits"), ("5²min", "not a time")])
def test_time_spans_take_ascii_digits_of_sane_length(text: str, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        parse_span(text, what="--every")


def test_sizes_take_ascii_digits_only() -> None:
    with pytest.raises(SpecError, match="cannot read"):
        parse_size("٣GiB")  # an Arabic-Indic three: int() takes it, nobody means it
    assert parse_size("3GiB") == 3 * GiB


@pytest.mark.parametrize(
    "argv", [["activate", "--wait", "nan"], ["activate", "--wait", "-1"], ["status", "--watch", "inf"]]
)
def test_waits_and_intervals_are_finite_and_positive(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "at least 0.1" in capsys.readouterr().err


@pytest.mark.parametrize(("sizes", "where"), [([5 << 50], "disk1"), ([3 << 50, 3 << 50], "volume group docker")])
def test_more_extents_than_lvm_counts_are_refused_with_a_larger_extent(sizes: list[int], where: str) -> None:
    with pytest.raises(SpecError, match=f"{where} would hold .* more than lvm's 4294967295") as refused:
        planner.plan(
            PoolSpec(devices=tuple(f"disk{n}" for n in range(1, len(sizes) + 1)), extent_size=1 << 20),
            virtual_disks(sizes),
        )
    assert "--extent-size" in refused.value.fix


def test_a_nul_byte_in_a_saved_plans_device_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = planner.plan(PoolSpec(devices=("disk1",)), virtual_disks([4 * GiB])).to_dict()
    document["spec"]["devices"] = ["/dev/sd\x00b"]
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(document))
    runner = ScriptedRunner()
    _refused(["apply", str(saved), "--yes"], capsys, "not an absolute device path", Context(runner, tmp_path, euid=0))
    assert runner.history == []


# 6. lvm reports of shapes lvm never prints


@pytest.mark.parametrize(
    "text",
    [
        '{"report": [{"lv": [{"vg_name": "docker"}]}]}',  # no lv_name
        '{"report": [{"lv": [{"lv_name": null, "vg_name": "docker"}]}]}',
        '{"report": [{"lv": [{"lv_name": "pool", "lv_size": 5}]}]}',
        '{"report": [{"lv": [{"lv_name": "pool", "lv_size": "10.00g"}]}]}',
        '{"report": [{"lv": [{"lv_name": {"nested": ["deep"]}}]}]}',
        '{"report": [{"lv": [["lv_name", "pool"]]}]}',
        '{"report": {"lv": []}}',
        '{"report": null}',
        "[" * 100_000,
        "not json",
    ],
)
def test_reports_lvm_never_prints_are_a_report_error(text: str) -> None:
    report._parsed.cache_clear()
    with pytest.raises(report.ReportError) as refused:
        report.parse_lvs(text)
    assert refused.value.fix


def test_vgs_without_their_fields_are_a_report_error() -> None:
    with pytest.raises(report.ReportError, match="has no 'vg_extent_size' field"):
        report.parse_vgs('{"report": [{"vg": [{"vg_name": "docker"}]}]}')


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.text() | st.integers(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)
    )
)
def test_any_json_is_read_or_a_report_error(data: object) -> None:
    text = json.dumps({"report": [{"lv": data, "vg": data, "pv": data}]})
    for parse in (report.parse_lvs, report.parse_pvs, report.parse_vgs):
        with contextlib.suppress(report.ReportError):
            parse(text)
