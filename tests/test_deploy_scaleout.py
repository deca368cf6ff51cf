"""The scale-out deployment files say what the two-host site test runs.

``deploy/haproxy.cfg`` is the balancer configuration ``tests/test_site_failover.py``
starts unchanged; here it is checked by HAProxy itself, against the node's ports, and
against the health-check settings ``deploy/SCALE-OUT.md`` promises. The systemd units
start roles that exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mmbcd_node.config import DicomConfig, Hl7Config, HttpConfig
from mmbcd_node.serve import ROLE_ORDER
from tests.support import site

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
HAPROXY = (DEPLOY / "haproxy.cfg").read_text()


def backends() -> dict[str, str]:
    blocks = re.split(r"\n(?=\S)", HAPROXY)
    return {b.split()[1]: b for b in blocks if b.startswith("backend ")}


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_example_configuration(tmp_path: Path) -> None:
    env = {**os.environ, "MMBCD_LB_ADDRESS": "127.0.0.1", "MMBCD_HOST_A": "127.0.0.2",
           "MMBCD_HOST_B": "127.0.0.3", "MMBCD_LB_STATS": str(tmp_path / "stats.sock")}
    checked = subprocess.run(["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")],
                             capture_output=True, text=True, env=env, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_backend_checks_healthz_on_the_nodes_http_port_as_documented() -> None:
    found = backends()
    ports = {"mmbcd_dicom": DicomConfig().port, "mmbcd_hl7": Hl7Config().port}
    assert set(found) == set(ports)
    documented = (DEPLOY / "SCALE-OUT.md").read_text()
    assert "every second; two failures take the host out" in documented
    for name, block in found.items():
        assert "option httpchk GET /healthz" in block
        assert (f"check port {HttpConfig().port} inter 1s fall 2 rise 2 "
                "on-marked-down shutdown-sessions") in block
        servers = re.findall(r'server (\S+) "\$\{(\w+)\}:(\d+)"', block)
        assert [(s, int(p)) for s, _, p in servers] == [("host-a", ports[name]),
                                                        ("host-b", ports[name])]
    defaults = (DicomConfig().port, Hl7Config().port, HttpConfig().port)
    assert defaults == (site.DICOM_PORT, site.HL7_PORT, site.HTTP_PORT), "the site runs these"


def test_the_systemd_units_start_known_roles() -> None:
    single = (DEPLOY / "mmbcd-node.service").read_text()
    assert re.search(r"^ExecStart=\S+/mmbcd-node serve$", single, re.M)
    per_role = (DEPLOY / "mmbcd-node@.service").read_text()
    assert re.search(r"^ExecStart=\S+/mmbcd-node serve --role %i$", per_role, re.M)
    listed = re.search(r"# Roles: ([a-z0-9, ]+)\.", per_role)
    assert listed and set(listed.group(1).replace(" ", "").split(",")) == set(ROLE_ORDER)
