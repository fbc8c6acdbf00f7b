"""The package layout of the wire code: who may import what.

``siridb.wire`` is neutral (no asyncio, no client or server); the embedded
server imports it and never the client; the request core has no asyncio;
no module imports another package's private names; embedded modules import
their siblings at module level (no imports hidden in functions); the 2.1.6
import paths re-export the one definition of each wire constant.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

from _paths import ROOT as PROJECT

from siridb.connector.lib import codec, constants, exceptions, protomap
from siridb.wire import decode, errors, framing, types, units

ROOT = PROJECT / 'siridb'
PACKAGES = ('connector', 'embedded', 'cli', 'wire', 'testing')


def _imports(path: Path) -> Iterator[Tuple[ast.ImportFrom | ast.Import, str, bool]]:
    """(node, absolute module, at module level) for each import in ``path``."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    package = '.'.join(path.relative_to(ROOT.parent).with_suffix('').parts[:-1])
    top_level = {id(n) for n in tree.body}
    for stmt in tree.body:  # `if TYPE_CHECKING:` blocks count as module level
        if isinstance(stmt, ast.If):
            top_level.update(id(n) for n in stmt.body)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ''
            yield node, module, id(node) in top_level
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, id(node) in top_level


def _files(sub: str) -> List[Path]:
    return sorted((ROOT / sub).rglob('*.py'))


def _owner(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 and parts[0] == 'siridb' else ''


def test_no_private_names_imported_across_packages() -> None:
    found = []
    for sub in PACKAGES:
        for path in _files(sub):
            for node, module, _ in _imports(path):
                owner = _owner(module)
                if isinstance(node, ast.ImportFrom) and owner and owner != sub:
                    found += [f'{path.relative_to(ROOT)}: {module}.{a.name}'
                              for a in node.names if a.name.startswith('_')]
    assert found == []


def test_the_wire_and_the_server_do_not_import_the_client() -> None:
    found = [f'{path.relative_to(ROOT)}: {module}'
             for sub in ('wire', 'embedded') for path in _files(sub)
             for _, module, _ in _imports(path) if _owner(module) == 'connector']
    assert found == []


def test_the_wire_and_the_request_core_have_no_asyncio() -> None:
    paths = _files('wire') + [ROOT / 'connector' / 'lib' / 'request_core.py']
    found = [str(p) for p in paths for _, module, _ in _imports(p)
             if module.split('.')[0] == 'asyncio']
    assert found == []
    assert any(module == 'siridb.wire.decode'
               for _, module, _ in _imports(ROOT / 'connector' / 'lib' / 'request_core.py'))


def test_embedded_modules_import_siblings_at_module_level() -> None:
    hidden = [f'{path.relative_to(ROOT)}:{node.lineno} {module}'
              for path in _files('embedded') + _files('wire')
              for node, module, top in _imports(path)
              if not top and module.startswith('siridb.')]
    assert hidden == []


def test_2_1_6_paths_re_export_the_one_definition() -> None:
    assert protomap.__all__ == types.__all__
    for name in types.__all__:
        assert getattr(protomap, name) is getattr(types, name)
    assert codec.HEADER is framing.HEADER and codec.MAX_PAYLOAD == framing.MAX_PAYLOAD
    assert codec.Package is decode.Package and codec.run_deep is decode.run_deep
    assert issubclass(codec.Decoder, decode.Decoder)
    assert issubclass(exceptions.ProtocolError, errors.WireError)
    assert issubclass(exceptions.ProtocolError, exceptions.ConnectionLostError)
    # constants of the wire are assigned in one module only
    assigned = [path.relative_to(ROOT) for path in ROOT.rglob('*.py')
                if 'MAX_PAYLOAD = ' in path.read_text(encoding='utf-8')
                or 'CPROTO_REQ_QUERY = ' in path.read_text(encoding='utf-8')
                or 'PID_SPACE = ' in path.read_text(encoding='utf-8')]
    assert sorted(map(str, assigned)) == ['wire/framing.py', 'wire/types.py']


def _literal_definitions(tree: ast.AST) -> Iterator[str]:
    """What each literal of a shared limit or table in ``tree`` spells out."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and \
                isinstance(node.left, ast.Constant) and node.left.value == 2 and \
                isinstance(node.right, ast.Constant) and node.right.value in (32, 63):
            yield f'2 ** {node.right.value}'
        elif isinstance(node, ast.Constant) and node.value in (
                1000_000_000, 2 ** 63 - 1, 2 ** 32 - 1) and type(node.value) is int:
            yield str(node.value)
        elif isinstance(node, (ast.Tuple, ast.List)) and \
                [getattr(e, 'value', None) for e in node.elts] == ['s', 'ms', 'us', 'ns']:
            yield 'precision names'
        elif isinstance(node, ast.Dict) and \
                {getattr(k, 'value', None) for k in node.keys} >= {'s', 'ms'}:
            yield 'precision dict'


def test_limits_and_precision_tables_are_defined_once() -> None:
    found = {}
    for path in ROOT.rglob('*.py'):
        for what in _literal_definitions(ast.parse(path.read_text(encoding='utf-8'))):
            found.setdefault(what, []).append(str(path.relative_to(ROOT)))
    assert found == {
        '2 ** 63': ['wire/units.py', 'wire/units.py'],  # INT64_MIN, INT64_MAX
        '2 ** 32': ['wire/units.py'],
        '1000000000': ['wire/units.py'],
        'precision names': ['wire/units.py'],
    }
    assert units.MAX_TIMESTAMP == {'s': 2 ** 32 - 1, 'ms': 2 ** 63 - 1,
                                   'us': 2 ** 63 - 1, 'ns': 2 ** 63 - 1}
    assert units.PRECISION_UNITS == {'s': 1, 'ms': 1000, 'us': 10 ** 6, 'ns': 10 ** 9}
    assert constants.INT64_MIN is units.INT64_MIN and \
        constants.PRECISION_NAMES is units.PRECISION_NAMES


def test_response_types_are_named_in_the_server() -> None:
    # QueryFailure(65, ...)-style calls: the type is a name of siridb.wire.types
    bare = []
    for path in (ROOT / 'embedded').rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Call) and node.args and \
                    isinstance(node.args[0], ast.Constant) and \
                    isinstance(node.args[0].value, int) and \
                    getattr(node.func, 'id', getattr(node.func, 'attr', '')) in (
                        'QueryFailure', 'ServiceFailure', '_error', '_send'):
                bare.append(f'{path.relative_to(ROOT)}:{node.lineno}')
    assert bare == []
