"""Offline stand-in for pypa's get-pip.py, which ansible-test downloads from
ci-files.testing.ansible.com (unreachable here) to put pip into each sanity venv.

ansible-test runs this file as `python get_pip_X_Y.py [pip options] pip==X.Y [--no-setuptools] [--no-wheel]`
inside an empty venv. We bootstrap the pip wheel bundled with CPython (ensurepip) and then let that
pip install exactly what ansible-test asked for, from PyPI as usual.
"""

import ensurepip
import os
import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
# ansible-test runs this with a trimmed environment; keep using the system's CA bundle
# (it may hold a proxy's CA that pip's bundled certifi does not).
system_ca_bundle = "/etc/ssl/certs/ca-certificates.crt"
if os.path.exists(system_ca_bundle):
    args = ["--cert", system_ca_bundle, *args]
ensurepip.bootstrap(upgrade=True)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args])
