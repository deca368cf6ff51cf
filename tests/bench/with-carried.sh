#!/usr/bin/env bash
# Runs a command on a machine that holds Python with PyTorch but nothing of this project
# and no network (a lent GPU machine): installs the wheels and dcmtk that `make
# device-carry` gathered into DIR under /tmp, then runs the command with them.
#   bash tests/bench/with-carried.sh var/device make bench-gpu PY=python3
set -euo pipefail
carried=$1; shift
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/mmbcd-site "$carried"/whl/*.whl
mkdir -p /tmp/mmbcd-dcmtk
for deb in "$carried"/deb/*.deb; do dpkg -x "$deb" /tmp/mmbcd-dcmtk; done  # never into /
dictionary=$(find /tmp/mmbcd-dcmtk/usr/share -name dicom.dic | head -1)
export PYTHONPATH=/tmp/mmbcd-site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PATH=/tmp/mmbcd-dcmtk/usr/bin:$PATH
export LD_LIBRARY_PATH=/tmp/mmbcd-dcmtk/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export DCMDICTPATH=$dictionary PYTHONUNBUFFERED=1
exec "$@"
