from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "lvm-2.03.16"


@pytest.fixture
def recorded() -> Path:
    """Real lvm2 2.03.16 / lsblk / wipefs outputs captured in the test VM."""
    return FIXTURES
