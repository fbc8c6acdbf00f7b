"""The fenced code blocks of README.md and docs/*.md, for tests that run them as
written so that the documentation never rots."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent


def code_blocks(doc: str, lang: str = 'python') -> List[str]:
    """The ```LANG blocks of ``doc`` (a path relative to the repository root), in order."""
    text = (ROOT / doc).read_text()
    return re.findall(rf'```{lang}\n(.*?)```', text, re.S)
