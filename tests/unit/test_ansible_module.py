"""The Ansible module's documentation matches its argument spec (a lint in place of ansible-test sanity)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

COLLECTIONS = Path(__file__).parents[2]
MODULE = COLLECTIONS / "ansible_collections/thinpool/thinpool/plugins/modules/thinpool.py"


@pytest.fixture(scope="module")
def module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("thinpool_ansible_module", MODULE)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_documented_options_are_exactly_the_argument_spec(module: Any) -> None:
    documented = yaml.safe_load(module.DOCUMENTATION)["options"]
    assert set(documented) == set(module.ARGUMENT_SPEC)
    for name, spec in module.ARGUMENT_SPEC.items():
        doc = documented[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("default") == spec.get("default"), name
        assert doc.get("choices") == spec.get("choices"), name
        assert doc.get("elements") == spec.get("elements"), name
        assert doc["description"], name


def test_examples_use_documented_options_and_return_is_yaml(module: Any) -> None:
    documented = set(yaml.safe_load(module.DOCUMENTATION)["options"])
    for task in yaml.safe_load(module.EXAMPLES):
        assert set(task["thinpool.thinpool.thinpool"]) <= documented
    returned = yaml.safe_load(module.RETURN)
    assert {"plan", "result", "engine_changed", "layout"} <= set(returned)


def test_argument_spec_is_valid_for_ansible(module: Any) -> None:
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    validator = ArgumentSpecValidator(module.ARGUMENT_SPEC)
    good = validator.validate({"devices": ["/dev/sdb"], "engine": "docker-overlay2-thin"})
    assert good.error_messages == [] and good.validated_parameters["autoextend_threshold"] == 80
    bad = validator.validate({"engine": "podman"})
    assert bad.error_messages and "podman" in bad.error_messages[0]


def test_the_module_spec_is_the_clis_spec(module: Any) -> None:
    from thinpool.cli.options import spec_to_argv

    params = {name: spec.get("default") for name, spec in module.ARGUMENT_SPEC.items()}
    params.update(
        devices=["/dev/sdb"],
        engine="docker-devicemapper",
        chunk_size="1m",
        hosts=["unix:///run/d.sock"],
        tls_generate=True,
        tls_sans=["build.example.com"],
        dns_cache=True,
        follow_links=True,
    )
    spec = module._spec(params)
    assert spec.devices == ("/dev/sdb",) and spec.chunk_size == 1024 * 1024
    assert spec.engine_options.hosts == ("unix:///run/d.sock",)
    assert spec.engine_options.tls_generate and spec.engine_options.tls_sans == ("build.example.com",)
    argv = spec_to_argv(spec)
    assert "--engine" in argv and "--dns-cache" in argv and argv[argv.index("--tls-san") + 1] == "build.example.com"
    assert spec.engine_options.follow_links and "--follow-links" in argv


def test_ansible_doc_renders_the_module() -> None:
    doc = shutil.which("ansible-doc", path=os.path.dirname(sys.executable)) or shutil.which("ansible-doc")
    if doc is None:
        pytest.skip("ansible-core is not installed")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS)}
    done = subprocess.run(
        [doc, "--json", "-t", "module", "thinpool.thinpool.thinpool"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rendered = json.loads(done.stdout)["thinpool.thinpool.thinpool"]["doc"]
    assert rendered["module"] == "thinpool" and "state" in rendered["options"]


def test_the_cli_and_the_module_take_their_defaults_from_the_spec(module: Any) -> None:
    from thinpool.cli import build_parser
    from thinpool.core.spec import OPTION_DEFAULTS, EngineOptions, PoolSpec
    from thinpool.core.units import parse_size

    documented = yaml.safe_load(module.DOCUMENTATION)["options"]
    apply = vars(build_parser("apply").parse_args(["apply"]))
    for name, value in OPTION_DEFAULTS.items():
        assert apply[name] == value, f"CLI --{name.replace('_', '-')}"
        if name in documented:
            assert documented[name]["default"] == value == module.ARGUMENT_SPEC[name]["default"], name
    spec, options = PoolSpec(), EngineOptions()  # and the text means what the spec holds
    assert parse_size(str(OPTION_DEFAULTS["extent_size"])) == spec.extent_size
    assert parse_size(str(OPTION_DEFAULTS["base_size"])) == options.base_size
    assert parse_size(str(OPTION_DEFAULTS["thin_device_size"])) == spec.workload.thin_device_size


def test_the_module_names_every_registered_engine_so_that_ansible_sends_it() -> None:
    """Ansible sends the module_utils a module imports by name; the registry loads adapters by importlib, which
    Ansible cannot see. A new engine missing here fails on every target (found by the VM tests once)."""
    import ast

    from thinpool import engines

    tree = ast.parse(MODULE.read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "thinpool.engines"
        for alias in node.names
    }
    assert set(engines.REGISTRY.values()) <= imported, set(engines.REGISTRY.values()) - imported


def test_the_module_takes_encrypt_and_tpm2_as_the_cli_does(module: Any) -> None:
    from thinpool.core.spec import Encryption
    from thinpool.errors import SpecError

    params = {name: spec.get("default") for name, spec in module.ARGUMENT_SPEC.items()}
    params.update(devices=["/dev/sdb"], encrypt=True, tpm2=True)
    assert module._spec(params).encryption == Encryption("/etc/thinpool/keys/docker.key", tpm2=True)
    with pytest.raises(SpecError, match="tpm2 opens what encrypt formats"):
        module._spec(params | {"encrypt": False})


def test_the_module_takes_the_layouts_as_the_cli_does(module: Any) -> None:
    from thinpool.cli import build_parser
    from thinpool.cli.options import spec_from_args

    params = {name: spec.get("default") for name, spec in module.ARGUMENT_SPEC.items()}
    params.update(devices=["/dev/sdb", "/dev/sdc"], layout="striped", metadata_layout="raid1", stripes=2,
                  stripe_size="128k")  # fmt: skip
    argv = ["apply", "--layout", "striped", "--metadata-layout", "raid1", "--stripes", "2", "--stripe-size", "128k",
            "/dev/sdb", "/dev/sdc"]  # fmt: skip
    from_cli = spec_from_args(build_parser("apply").parse_args(argv))
    assert module._spec(params) == from_cli
    assert (from_cli.layout, from_cli.stripes, from_cli.stripe_size) == ("striped", 2, 128 * 1024)
