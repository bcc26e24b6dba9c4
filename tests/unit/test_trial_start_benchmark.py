"""benchmarks/trial_start.py: the CPU of a child is the child's, not the wall's."""

from __future__ import annotations

import pytest
from benchmarks.trial_start import cpu_of

pytestmark = pytest.mark.unit


def test_cpu_of_counts_the_child_cpu_and_not_its_sleep(tmp_path):
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    cpu, wall = cpu_of(["-c", busy], str(tmp_path))
    assert cpu >= 0.3
    assert wall >= cpu * 0.9
    cpu, wall = cpu_of(["-c", "import time; time.sleep(0.4)"], str(tmp_path))
    assert wall >= 0.4
    assert cpu < 0.3
