"""``serve``: how a node process runs its roles."""

from __future__ import annotations

import gc
import threading
import time

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
