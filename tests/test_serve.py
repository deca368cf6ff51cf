"""``serve``: how a node process runs its roles."""

from __future__ import annotations

import gc
import threading
import time

import pytest
from sqlalchemy.orm import sessionmaker

from mmbcd_node.config import load_config
from mmbcd_node.serve import run_roles


def test_a_serving_process_takes_what_start_up_built_out_of_the_collectors_reach() -> None:
    # Full collections then walk only what receiving creates, instead of stalling every
    # thread for the ~190,000 objects of the imported modules every few dozen images.
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    stop = threading.Event()
    serving = threading.Thread(target=run_roles,
                               args=(load_config(environ={}), sessionmaker(), [], stop))
    serving.start()
    try:
        deadline = time.monotonic() + 30
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gc.get_freeze_count() > 10_000
    finally:
        stop.set()
        serving.join(timeout=30)
        gc.unfreeze()
    assert not serving.is_alive()


@pytest.mark.parametrize("empty_db_url", ["sqlite"], indirect=True)
def test_a_receiver_whose_limits_exceed_its_memory_budget_does_not_start(node_factory) -> None:
    node = node_factory(roles=["dicom"], start=False,
                        settings={"dicom": {"max_associations": 40}})
    result = node.cli("serve", "--role", "dicom", check=False, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "dicom.memory_budget_bytes" in result.stderr
    assert "max_associations 40" in result.stderr
