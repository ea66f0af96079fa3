import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "lvm-2.03.16"


@pytest.fixture
def recorded() -> Path:
    """Real lvm2 2.03.16 / lsblk / wipefs outputs captured in the test VM."""
    return FIXTURES


def _strict() -> bool:
    """Under CI (CI=true, as .ci/run sets it) a skipped test is a failure: everything must run."""
    return os.environ.get("CI") == "true"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if _strict() and skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if _strict() and skipped:
        terminalreporter.write_line(
            f"CI=true: {len(skipped)} skipped test(s) count as failures; everything must run", red=True
        )
