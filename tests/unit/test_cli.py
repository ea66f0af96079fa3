import json
from pathlib import Path

import pytest

from thinpool.cli import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, main


def test_plan_virtual_disk_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--disk-size", "744GiB"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "+ create thin-pool docker/thinpool" in out
    assert "Plan: 4 to add, 1 to change, 0 to destroy." in out


def test_plan_json_and_detailed_exitcode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--disk-size", "4GiB", "--json", "--detailed-exitcode"]) == EXIT_CHANGES
    data = json.loads(capsys.readouterr().out)
    assert data["schema_version"] == 2
    assert data["layout"]["free_extents"] == 1023
    assert data["spec"]["devices"] == ["disk1"]


def test_plan_out_saves_the_same_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "plan.json"
    assert main(["plan", "--disk-size", "8GiB", "--disk-size", "8GiB", "--json", "--out", str(target)]) == EXIT_OK
    assert json.loads(target.read_text()) == json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan", "--disk-size", "744"], "has no unit"),
        (["plan", "--disk-size", "744GB"], "decimal unit"),
        (["plan", "--disk-size", "4GiB", "--chunk-size", "96k"], "chunk size"),
        (["plan", "--disk-size", "4GiB", "--autoextend-threshold", "30"], "threshold"),
        (["plan", "--disk-size", "4GiB", "--vg=-x"], "starts with a hyphen"),
        (["plan", "--disk-size", "4GiB", "--data-size", "200%VG"], "outside 0-100%"),
        (["plan", "--disk-size", "4GiB", "--data-size", "100GiB"], "short by"),
        (["plan", "--disk-size", "4GiB", "/dev/sdb"], "cannot be mixed"),
    ],
)
def test_bad_input_is_a_clear_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert message in err
    assert "fix:" in err
    assert "Traceback" not in err


def test_errors_are_json_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--disk-size", "4GiB", "--data-size", "100GiB", "--json"]) == EXIT_ERROR
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "thinpool-error" and data["error"] == "DoesNotFit" and data["fix"]


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    out = capsys.readouterr().out
    for option in (
        "--disk-size",
        "--data-size",
        "--chunk-size",
        "--metadata-size",
        "--max-thin-devices",
        "--thin-device-size",
        "--max-pool-size",
        "--headroom",
        "--autoextend-threshold",
        "--autoextend-percent",
        "--json",
        "--detailed-exitcode",
        "--out",
        "--wipe",
        "exit codes",
    ):
        assert option in out, option


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_ERROR
    assert "plan" in capsys.readouterr().out


def test_apply_refuses_a_saved_file_that_is_not_a_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("apply checks for root before reading the plan")
    bogus = tmp_path / "plan.json"
    bogus.write_text('{"hello": 1}')
    assert main(["apply", str(bogus), "--yes"]) == EXIT_ERROR
    assert "not a usable thinpool plan" in capsys.readouterr().err


def test_rehearse_refuses_an_impossible_plan_before_booting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rehearse", "--disk-size", "4GiB", "--data-size", "5GiB"]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert "short by" in captured.err
    assert "booting" not in captured.out


def test_each_command_is_built_by_the_module_the_registry_names() -> None:
    """A run builds only its command's module; the registry must match what the modules add."""
    import argparse

    from thinpool.cli import COMMANDS, build_parser, command_named

    def names(parser: argparse.ArgumentParser) -> list[str]:
        subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return list(subcommands.choices)

    assert names(build_parser()) == list(COMMANDS)  # the order --help lists them in
    for command, module in COMMANDS.items():
        assert names(build_parser(command)) == [name for name, owner in COMMANDS.items() if owner == module]
    assert command_named(["-v", "metrics", "--textfile", "x"]) == "metrics"
    assert command_named(["--version"]) is None and command_named(["nosuch"]) is None
