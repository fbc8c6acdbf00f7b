"""House rules of the client side (``siridb/connector``, ``siridb/cli``),
checked on the source: no reach-ins into other objects' private state, no
``Any`` escapes, and each client-side constant defined once (in
``siridb/connector/lib/constants.py``)."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import List

from siridb.connector.lib import constants

ROOT = Path(__file__).resolve().parent.parent / 'siridb'
CONSTANTS = ROOT / 'connector' / 'lib' / 'constants.py'


def _files() -> List[Path]:
    return sorted((ROOT / 'connector').rglob('*.py')) + sorted((ROOT / 'cli').rglob('*.py'))


def _private(name: str) -> bool:
    return name.startswith('_') and not name.startswith('__')


def test_no_private_attributes_of_other_objects() -> None:
    found = []
    for path in _files():
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and not (isinstance(node.value, ast.Name)
                             and node.value.id in ('self', 'cls'))):
                found.append(f'{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}')
    assert found == []


def test_no_any_escapes_of_self() -> None:
    found = [f'{path.relative_to(ROOT)}:{n}' for path in _files()
             for n, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1)
             if re.search(r':\s*Any\s*=\s*self\b', line)]
    assert found == []


# the values a second copy of a client-side constant would spell out
NUMBERS = {2 ** 63, 2 ** 63 - 1, 2 ** 32 - 1, 10 ** 9, 10 ** 6, 9000}
NAMES = {'s', 'ms', 'us', 'ns'}


def _copies(tree: ast.AST) -> List[ast.AST]:
    """Number literals or power expressions equal to one of ``NUMBERS`` and
    containers holding all four precision names (docstrings, help texts and
    comments may name them)."""
    out: List[ast.AST] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)
                and isinstance(node.left, ast.Constant) and type(node.left.value) is int
                and isinstance(node.right, ast.Constant) and type(node.right.value) is int
                and 0 <= node.right.value <= 64):
            value = node.left.value ** node.right.value
            if value in NUMBERS or value - 1 in NUMBERS:
                out.append(node)
        elif (isinstance(node, ast.Constant) and type(node.value) is int
              and node.value in NUMBERS):
            out.append(node)
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
            items = node.keys if isinstance(node, ast.Dict) else node.elts
            strings = {k.value for k in items if isinstance(k, ast.Constant)}
            if NAMES <= strings:
                out.append(node)
    return out


def test_each_client_constant_is_defined_once() -> None:
    found = [f'{path.relative_to(ROOT)}:{getattr(node, "lineno", 0)}: {ast.unparse(node)}'
             for path in _files() if path != CONSTANTS
             for node in _copies(ast.parse(path.read_text(encoding='utf-8')))]
    assert found == []
    # the one definition, with the values the server uses
    assert constants.INT64_MIN == -2 ** 63 and constants.INT64_MAX == 2 ** 63 - 1
    assert constants.PRECISION_NAMES == ('s', 'ms', 'us', 'ns')
    assert constants.PRECISION_BY_NAME == {'s': 0, 'ms': 1, 'us': 2, 'ns': 3}
    assert constants.PRECISION_FACTORS == (1, 10 ** 3, 10 ** 6, 10 ** 9)
    assert constants.MAX_TIMESTAMPS == {'s': 2 ** 32 - 1, 'ms': 2 ** 63 - 1,
                                        'us': 2 ** 63 - 1, 'ns': 2 ** 63 - 1}
    assert constants.DEFAULT_CLIENT_PORT == 9000
    # and the copy finder finds the spellings it is meant to find
    sample = ast.parse("LOW = -2 ** 63\nP = ('s', 'ms', 'us', 'ns')\nF = 1_000_000_000")
    assert len(_copies(sample)) == 3
