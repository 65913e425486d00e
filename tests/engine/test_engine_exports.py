"""``from irfoundry.engine import evaluate`` is the function whatever was imported before it."""

from __future__ import annotations

import subprocess
import sys


def test_names_stay_functions_after_their_submodules_were_imported_directly():
    code = ("from irfoundry.engine.evaluate import evaluate as e\n"
            "from irfoundry.engine.predict import predict as p\n"
            "from irfoundry.engine.export import export as x\n"
            "import irfoundry.engine.train\n"
            "from irfoundry.engine import evaluate, predict, export, train\n"
            "import types\n"
            "assert evaluate is e and predict is p and export is x, (evaluate, predict, export)\n"
            "assert callable(train) and not isinstance(train, types.ModuleType)\n"
            "import irfoundry.engine.evaluate as m\n"
            "import sys; assert sys.modules['irfoundry.engine.evaluate'].evaluate is e\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
