"""Which engines a worker guarantee test runs on (``@pytest.mark.parametrize("engine", ..., indirect=True)``
with the ``engine`` fixture of tests/conftest.py).

Every guarantee test runs on the default engine (kafka). The Faust engine runs the same tests
too; the longest of them run on Faust only in ``make faults`` (FAULT_LONG=1), to keep
``make test`` near 20 minutes.
"""

from __future__ import annotations

import os

import pytest

LONG = os.environ.get("FAULT_LONG") == "1"  # not RELAY_: settings refuse unknown RELAY_ names
FAUST_IN_LONG_RUNS = pytest.param("faust", marks=pytest.mark.skipif(not LONG, reason="Faust variant: make faults"))
BOTH = ["kafka", "faust"]
KAFKA_AND_LONG_FAUST = ["kafka", FAUST_IN_LONG_RUNS]
