"""The core imports nothing from web land (STYLE.md: the layering is tested)."""

import json
import subprocess
import sys
from pathlib import Path

WEB_PACKAGES = ["fastapi", "pydantic", "pydantic_core", "starlette", "uvicorn"]
REPO = Path(__file__).resolve().parents[2]


def test_importing_service_core_in_a_fresh_interpreter_loads_no_web_module():
    script = (
        "import json, sys\n"
        "import service.core\n"
        f"web = {WEB_PACKAGES!r}\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in web or m.startswith('service.api')]\n"
        "print(json.dumps(sorted(loaded)))\n"
    )

    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False, timeout=60
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == []
