"""``make bench-failover``: how long a two-host site takes to recover from losing a host,
and what the second host buys.

Builds the site of ``tests/support/site.py`` (two hosts running every role behind
HAProxy, PostgreSQL on a third namespace, dcmtk ``storescp`` as the PACS) with the
packaged bundle on the CPU, then:

1. **Throughput**: the same load (``--load`` studies pushed back to back through the
   balancer, each with its order) with both hosts up, then with host-a stopped: studies
   per hour from the first push to the last SR at the PACS. Both hosts share this
   machine's cores, so the ratio says what the CPU allows here, not what a second
   machine would add.
2. **Recovery**, ``--repeat`` times: ``--studies`` studies are pushed; once host-a holds
   a job its cable is pulled and every process on it is SIGKILLed; the time from the
   kill to the SR of the last study host-a held. host-a is started again between runs.

After each run the site is checked as the fault tests check it (nothing acknowledged
lost, one SR per study, one ORU per result, ``audit verify``). Prints the median
recovery with the lease used; the last line is exactly
``failover recovery s: X.X (lease Y s)``.

    python -m tests.bench.failover [--lease 10] [--repeat 3] [--studies 8] [--load 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.support.failover import (
    Traffic,
    check_site,
    kill_host_mid_stream,
    settled,
    sr_arrivals,
    studies,
)
from tests.support.site import Site, site_unavailable


def settings(lease: float) -> dict[str, object]:
    return {"worker": {"lease_seconds": lease, "heartbeat_seconds": max(0.5, lease / 8),
                       "poll_seconds": 0.2, "backoff_seconds": 0.5},
            "results": {"kinds": ["sr"]},
            "completion": {"expected_views_quiet_seconds": 0.5, "check_interval_seconds": 0.2},
            "orders": {"check_interval_seconds": 0.2}}


def wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def studies_per_hour(site: Site, folder: Path, first: int, count: int, done_before: int) -> float:
    batch = studies(folder, first, count)
    started = time.time()
    Traffic(site, batch).start().join(timeout=900)
    wait(lambda: settled(site, done_before + count), 900, "the load to finish")
    arrivals = sr_arrivals(site)
    last = max(arrivals[s.study_uid].timestamp() for s in batch)
    return count / (last - started) * 3600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lease", type=float, default=10.0, help="[worker] lease_seconds")
    parser.add_argument("--repeat", type=int, default=3, help="host-a kills")
    parser.add_argument("--studies", type=int, default=8, help="studies per kill run")
    parser.add_argument("--load", type=int, default=16, help="studies per throughput run")
    args = parser.parse_args(argv)
    unavailable = site_unavailable()
    if unavailable is not None:
        print(f"cannot build the two-host site here: {unavailable}")
        return 2
    folder = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    site = Site(folder, settings(args.lease))
    started = time.monotonic()
    site.start()
    print(f"site up in {time.monotonic() - started:.1f} s ({folder}); "
          f"lease {args.lease:g} s, {os.cpu_count()} CPU cores shared by both hosts")
    try:
        done = 0
        two = studies_per_hour(site, folder / "in", 1000, args.load, done)
        done += args.load
        site.hosts["host-a"].stop()
        wait(lambda: site.balanced() == {"host-b"}, 30, "the balancer to drop host-a")
        one = studies_per_hour(site, folder / "in", 2000, args.load, done)
        done += args.load
        print(f"throughput, {args.load} studies back to back: two hosts {two:.0f} studies/h, "
              f"one host {one:.0f} studies/h, ratio {two / one:.2f} "
              f"(both hosts on the same {os.cpu_count()} cores)")
        recoveries = []
        acknowledged: set[Path] = set()
        everything = []
        for run in range(args.repeat):
            site.all_hosts_up()
            batch = studies(folder / "in", 3000 + 100 * run, args.studies)
            outcome = kill_host_mid_stream(site, batch)
            done += args.studies
            everything += batch
            acknowledged |= outcome.traffic.acknowledged
            checked = Traffic(site, everything)
            checked.acknowledged = acknowledged
            check_site(site, checked)
            recoveries.append(outcome.recovery_seconds)
            print(f"run {run + 1}: host-a held job(s) {outcome.held}; last of them at the "
                  f"PACS {outcome.recovery_seconds:.1f} s after the kill; modality retries "
                  f"{outcome.traffic.retries}; checks passed")
        median = statistics.median(recoveries)
        print(f"recovery, median of {len(recoveries)}: {median:.1f} s "
              f"(goal: at most the lease + 10 s = {args.lease + 10:.0f} s)")
        print(f"failover recovery s: {median:.1f} (lease {args.lease:g} s)")
        return 0
    finally:
        site.stop()


if __name__ == "__main__":
    sys.exit(main())
