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

from siridb.connector.lib import codec, exceptions, protomap
from siridb.wire import decode, errors, framing, types

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
