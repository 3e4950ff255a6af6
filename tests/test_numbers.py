"""Numbers the CLI prints read as people write them (`1,099,511,627,776`, not `1.09951e+12`)."""

from __future__ import annotations

import pytest

from edge.agent.config import parse_config
from lienwatch.errors import ConfigError
from lienwatch.fmt import number


@pytest.mark.parametrize(("value", "text"), [
    (2**40, "1,099,511,627,776"),
    (123456789.0, "123,456,789"),
    (123456789.25, "123,456,789"),
    (13.900000000000002, "13.9"),
    (0.005, "0.005"),
    (1.5e-7, "0.00000015"),
    (-1234.5, "-1,234.5"),
    (0.0, "0"),
    (float("inf"), "inf"),
])
def test_numbers_never_use_exponent_notation(value: float, text: str) -> None:
    assert number(value) == text


def test_an_agent_config_range_error_prints_its_bounds_in_full() -> None:
    document = {"device": {"id": "v"}, "uplink": {"mqtt": {"host": "b"}, "queue": {"max_bytes": 2**41}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    assert "65,536..1,099,511,627,776" in str(caught.value) and "e+" not in str(caught.value)
