"""Where things are, for tests in any folder below tests/."""
from __future__ import annotations

from pathlib import Path

#: the repository root
ROOT = Path(__file__).resolve().parent.parent
#: the recorded transcripts of a real SiriDB 2.0.55
CONFORMANCE = ROOT / 'tests' / 'conformance'
