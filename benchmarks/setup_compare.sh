#!/usr/bin/env bash
# Installs what benchmarks/compare.py needs on a fresh Debian 12 (bookworm) machine, as root:
#   - Apache ZooKeeper 3.8 from Debian (package `zookeeper`: its jars land in /usr/share/java and
#     /usr/share/zookeeper; it depends on default-jre, so a Java runtime comes with it if none is installed);
#   - kazoo (the Python ZooKeeper client), PySyncObj, matplotlib (the chart), psutil (resident memory);
#   - embedzk itself, editable, from this checkout.
# The Debian package installs a `zookeeper` system service definition; compare.py never uses it: it starts its
# own ensemble on free loopback ports with data under a temporary directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y zookeeper
# If the package's post-install started a system ZooKeeper (it does not on Debian 12, where the service is
# disabled by default), it would only take port 2181; compare.py picks free ports, so it does not matter.

python -m pip install kazoo pysyncobj matplotlib psutil
python -m pip install -e "$here/.."

java -version
python - <<'PY'
import kazoo, pysyncobj, matplotlib, psutil, embedzk
print("ok: kazoo", kazoo.__version__ if hasattr(kazoo, "__version__") else "", "pysyncobj, matplotlib",
      matplotlib.__version__, "psutil", psutil.__version__)
PY
ls /usr/share/java/zookeeper*.jar >/dev/null && echo "ok: ZooKeeper jars in /usr/share/java"
