"""Loading the plugin imports no framework (and not even numpy): a run that
uses no marker pays nothing for it."""

from __future__ import annotations

import subprocess
import sys


def test_plugin_import_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys, pytest, pytest_trainsanity.plugin, pytest_trainsanity;"
        "print(','.join(m for m in ('torch', 'tensorflow', 'keras', 'numpy', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
