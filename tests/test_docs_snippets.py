"""The Python snippets of README.md, docs/driver.md, docs/embedded-server.md and
docs/testing.md (its faults example), run as written against the embedded server,
and docs/development.md's commands (the other docs pages have tests of their own:
test_examples_readme.py, test_cli_readme.py, test_proxy.py)."""
from __future__ import annotations

import ast
import contextlib
import io
import re
from typing import Any, Dict

import pytest
from _docs import code_blocks
from _paths import ROOT

from siridb.embedded import EmbeddedServer

PRINTED = re.compile(r'print\(.*\)\s+#\s(\S[^(]*?)(\s+\(.*\))?$')

# The pool example names three servers: each is pointed at one embedded server.
HOSTS = re.compile(r"'db[123]', 9000")


async def run_top_level(code: str) -> str:
    """Run a snippet that uses top-level ``await``; return what it printed."""
    compiled = compile(code, '<docs>', 'exec', flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    out = io.StringIO()
    namespace: Dict[str, Any] = {}
    with contextlib.redirect_stdout(out):
        result = eval(compiled, namespace)
        if result is not None:
            await result
    return out.getvalue()


def expected_lines(code: str) -> list:
    return [m.group(1) for line in code.splitlines() if (m := PRINTED.search(line))]


@pytest.mark.parametrize('doc', ['README.md', 'docs/driver.md'])
def test_pool_usage_example_runs(doc: str) -> None:
    block = code_blocks(doc)[0]
    assert len(HOSTS.findall(block)) == 3
    with EmbeddedServer.start_in_thread(databases={'dbtest': 's'}) as srv:
        code = HOSTS.sub(f'{srv.host!r}, {srv.port}', block)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, doc, 'exec'), {'__name__': '__main__'})
    assert out.getvalue().strip() == '[[1700000000000, 0.5], [1700000010000, 0.7]]'


@pytest.mark.parametrize('doc, index', [('README.md', 1), ('docs/embedded-server.md', 0)])
async def test_embedded_server_example_runs(doc: str, index: int) -> None:
    block = code_blocks(doc)[index]
    assert 'EmbeddedServer(port=0' in block
    printed = (await run_top_level(block)).splitlines()
    expected = expected_lines(block)
    assert expected and printed == expected


async def test_insert_faults_example_runs() -> None:
    block = code_blocks('docs/testing.md')[1]
    assert 'InsertFaults.attach(server)' in block
    printed = (await run_top_level(block)).splitlines()
    assert printed == expected_lines(block) == ["('x', 2, 2.5)", '2 1']


async def test_server_settings_example_runs() -> None:
    block = code_blocks('docs/embedded-server.md')[1]
    assert 'ServerSettings(' in block
    printed = (await run_top_level(block)).splitlines()
    assert printed == expected_lines(block) and printed


def test_development_commands_are_what_ci_runs() -> None:
    """docs/development.md lists the checks CI makes: each command of its first
    shell block (but the line that runs .ci/run itself) is a line of .ci/run."""
    block = code_blocks('docs/development.md', 'bash')[0]
    commands = [line.split('#')[0].strip() for line in block.splitlines()]
    ci = {line.strip() for line in (ROOT / '.ci' / 'run').read_text().splitlines()}
    listed = [c for c in commands if c and c != 'bash .ci/run']
    assert len(listed) == 4 and 'bash .ci/run' in commands
    assert [c for c in listed if c not in ci] == []
