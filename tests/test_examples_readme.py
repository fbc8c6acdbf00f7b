"""The Python snippets of docs/high-level-api.md (sessions, builder, results,
service API, URLs), run as written against the embedded server.

The ```python blocks run one after the other in one namespace (top-level
``await`` allowed) that starts with ``client`` connected to a millisecond
database; ``localhost:9000`` in a block is replaced
by the test server's address. A line ``print(...)  # text`` must print the
line ``text``.
"""
from __future__ import annotations

import ast
import contextlib
import io
import re
from typing import Any, Dict, List, Tuple

from _docs import code_blocks

from siridb.connector import SiriDBClient
from siridb.embedded import EmbeddedServer

EXPECT = re.compile(r'print\(.*\)\s+#\s(.+)$')


def section_blocks() -> List[str]:
    return code_blocks('docs/high-level-api.md')


def expectations(block: str) -> List[str]:
    return [m.group(1).rstrip() for line in block.splitlines()
            if (m := EXPECT.search(line))]


async def run_block(code: str, namespace: Dict[str, Any]) -> str:
    compiled = compile(code, '<README>', 'exec', flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = eval(compiled, namespace)
        if result is not None:
            await result
    return out.getvalue()


def test_every_snippet_is_found_and_has_checked_output() -> None:
    blocks = section_blocks()
    assert len(blocks) == 7
    assert sum(len(expectations(b)) for b in blocks) >= 12


async def test_readme_snippets_run_as_written() -> None:
    blocks = section_blocks()
    ran: List[Tuple[int, str]] = []
    namespace: Dict[str, Any] = {}
    async with EmbeddedServer(port=0, databases={'dbtest': 'ms'}) as srv:
        async with SiriDBClient('iris', 'siri', 'dbtest', [(srv.host, srv.port)]) as client:
            namespace['client'] = client
            for i, block in enumerate(blocks):
                code = (block.replace("'localhost', 9000", f'{srv.host!r}, {srv.port}')
                        .replace('localhost:9000', f'{srv.host}:{srv.port}'))
                output = await run_block(code, namespace)
                lines = output.splitlines()
                for expected in expectations(block):
                    assert expected in lines, (i, expected, output)
                ran.append((i, output))
        db = srv.store.databases['dbtest']
        assert len(db.series['sensor.2']) == 1000
        assert 'weather' not in srv.store.databases
    assert len(ran) == len(blocks)
    assert namespace['client'] is client  # no snippet rebinds it
