"""The fenced code blocks of README.md and docs/*.md, for tests that run them as
written so that the documentation never rots."""
from __future__ import annotations

import re
from typing import List

from _paths import ROOT


def code_blocks(doc: str, lang: str = 'python') -> List[str]:
    """The ```LANG blocks of ``doc`` (a path relative to the repository root), in order."""
    text = (ROOT / doc).read_text()
    return re.findall(rf'```{lang}\n(.*?)```', text, re.S)
