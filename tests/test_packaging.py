"""Packaging as a user meets it: the built wheel in a fresh virtual environment
and a fresh project (the shipped pytest fixtures in strict and auto mode, and a
pytest run that is not broken when the testing extra is missing), and the sdist,
unpacked, running its own test suite.

These tests build with setuptools from the package index (as pip does) and
install into new virtual environments; pip's cache keeps them to seconds.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import venv
from pathlib import Path
from typing import Dict, List

import pytest
from _docs import code_blocks
from _paths import ROOT

PIP_TIMEOUT = 300
RUN_TIMEOUT = 120

#: copied to the build directory: everything but caches and build output
_IGNORE = shutil.ignore_patterns(
    '.git', '.venv*', '__pycache__', '*.pyc', 'build', 'dist', '*.egg-info',
    '.mypy_cache', '.ruff_cache', '.pytest_cache', '.hypothesis')

#: the documented fixture example (docs/testing.md), marked so that it runs in strict mode
EXAMPLE_TEST = code_blocks('docs/testing.md')[0]

#: without the mark: runs in auto mode only
UNMARKED_TEST = '''\
async def test_unmarked(siridb_client):
    result = await siridb_client.query('count series')
    assert result == {'series': 0}
'''

SYNC_TEST = '''\
def test_plain():
    assert 1 + 1 == 2
'''


def _env() -> Dict[str, str]:
    """The environment without this checkout on the import path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'PYTEST_ADDOPTS')}
    env['PIP_DISABLE_PIP_VERSION_CHECK'] = '1'
    return env


def _run(args: List[str], cwd: Path, timeout: float = RUN_TIMEOUT,
         env: Dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=_env() if env is None else env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _check(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f'{proc.args}\n{proc.stdout}\n{proc.stderr}'
    return proc.stdout


def _new_venv(path: Path) -> Path:
    """A virtual environment without pip; packages go in with this pip's --python."""
    venv.EnvBuilder(with_pip=False, clear=True).create(path)
    return path / 'bin' / 'python'


def _pip_install(python: Path, *reqs: str, cwd: Path) -> None:
    # --no-compile: no .pyc files written for what is installed (pytest and
    # its dependencies are most of it); imports work the same, from source
    _check(_run([sys.executable, '-m', 'pip', '--python', str(python), 'install',
                 '-q', '--no-input', '--no-compile', *reqs], cwd, timeout=PIP_TIMEOUT))


@pytest.fixture(scope='module')
def built(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """The wheel and the sdist, built from a copy of the source tree with the
    setuptools the build-system table asks for."""
    tmp = tmp_path_factory.mktemp('build')
    src = tmp / 'src'
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    python = _new_venv(tmp / 'env')
    _pip_install(python, 'setuptools>=77', cwd=tmp)
    out = tmp / 'dist'
    built: Dict[str, Path] = {}
    for kind in ('wheel', 'sdist'):  # one process each: setuptools keeps state
        code = (f'import sys, setuptools.build_meta as m; '
                f'print("BUILT", m.build_{kind}(sys.argv[1]))')
        lines = _check(_run([str(python), '-c', code, str(out)], src)).splitlines()
        built[kind] = out / [ln for ln in lines if ln.startswith('BUILT ')][-1].split()[1]
    return built


def _project(path: Path, mode: str, conftest: str) -> Path:
    path.mkdir()
    (path / 'pyproject.toml').write_text(textwrap.dedent(f'''\
        [project]
        name = "myapp"
        version = "0.1"

        [tool.pytest.ini_options]
        asyncio_mode = "{mode}"
        asyncio_default_fixture_loop_scope = "function"
        '''))
    (path / 'conftest.py').write_text(conftest)
    (path / 'tests').mkdir()
    (path / 'tests' / 'test_example.py').write_text(EXAMPLE_TEST)
    (path / 'tests' / 'test_plain.py').write_text(SYNC_TEST)
    return path


def test_wheel_fixtures_in_a_fresh_project(built: Dict[str, Path], tmp_path: Path) -> None:
    python = _new_venv(tmp_path / 'venv')
    wheel = str(built['wheel'])
    pytest_cmd = [str(python), '-m', 'pytest', '-q', '-p', 'no:cacheprovider']

    # the driver and pytest, not the extra: anyone's pytest still runs; asking
    # for a fixture fails with the name of the extra
    _pip_install(python, wheel, 'pytest>=7', cwd=tmp_path)
    # (one run of both files: the plain test passes, the fixture test alone fails)
    plain = _project(tmp_path / 'plain', 'strict', '')
    proc = _run(pytest_cmd, plain)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    counts = _summary_counts(proc.stdout)
    assert counts.get('passed') == 1, proc.stdout
    assert counts.get('failed', 0) + counts.get('errors', 0) + counts.get('error', 0) == 1, \
        proc.stdout
    assert re.search(r'^(FAILED|ERROR) tests/test_example\.py', proc.stdout, re.M), proc.stdout
    assert "pip install 'siridb-connector[testing]'" in proc.stdout

    _pip_install(python, f'siridb-connector[testing] @ {built["wheel"].as_uri()}',
                 cwd=tmp_path)
    where = _check(_run([str(python), '-c', 'import siridb; print(siridb.__file__)'],
                        tmp_path))
    assert where.startswith(str(tmp_path / 'venv')), where

    # strict mode, fixtures from the entry point alone (empty conftest.py)
    strict = _project(tmp_path / 'strict', 'strict', '')
    out = _check(_run(pytest_cmd, strict))
    assert '2 passed' in out, out

    # auto mode, with the explicit pytest_plugins line of older instructions
    auto = _project(tmp_path / 'auto', 'auto',
                    "pytest_plugins = ['siridb.testing.pytest_plugin']\n")
    (auto / 'tests' / 'test_unmarked.py').write_text(UNMARKED_TEST)
    out = _check(_run(pytest_cmd, auto))
    assert '3 passed' in out, out


#: run in the unpacked sdist: quick files that cover the driver, the embedded
#: server, the shipped fixtures (pytest_plugins line) and the shared helpers
#: (the transcripts are read when the whole tree is collected: the conformance
#: tests are parametrized by their lines)
SDIST_SUBSET = ['tests/connector/test_url.py', 'tests/connector/test_results.py',
                'tests/embedded/test_embedded_cluster.py', 'tests/embedded/test_server_wire.py']

#: a pytest plugin for the sdist run: the whole tree is collected (so every test
#: module of the sdist must import) and then only SDIST_SUBSET runs; one process
#: instead of a --collect-only run plus a run of the subset
SUBSET_PLUGIN = f'''\
SUBSET = {SDIST_SUBSET!r}


def pytest_collection_modifyitems(config, items):
    keep = [item for item in items if item.nodeid.split('::')[0] in SUBSET]
    dropped = [item for item in items if item.nodeid.split('::')[0] not in SUBSET]
    config.hook.pytest_deselected(items=dropped)
    items[:] = keep
'''


def _unpacked_sdist(built: Dict[str, Path], tmp_path: Path) -> Path:
    """The sdist unpacked into ``tmp_path``; its top folder."""
    with tarfile.open(built['sdist']) as tar:
        if hasattr(tarfile, 'data_filter'):
            tar.extractall(tmp_path, filter='data')
        else:  # Python before 3.11.4 / 3.10.12 / 3.9.17
            tar.extractall(tmp_path)
    (top,) = tmp_path.iterdir()
    return top


def _sdist_pytest(top: Path, args: List[str], timeout: float = RUN_TIMEOUT,
                  plugin_dir: Path | None = None) -> str:
    """pytest run in the unpacked sdist, its own tree on the import path (and
    ``plugin_dir``, where a ``-p`` plugin lives, when given)."""
    env = _env()
    env['PYTHONPATH'] = str(top) if plugin_dir is None else f'{top}{os.pathsep}{plugin_dir}'
    cmd = [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-q']
    return _check(_run(cmd + args, top, timeout=timeout, env=env))


def _no_failures(out: str) -> bool:
    return ' passed' in out and not re.search(r'\b\d+ (failed|errors?)\b', out)  # xfailed is fine


def _summary_counts(out: str) -> Dict[str, int]:
    """The outcome counts of pytest's last summary line, e.g. {'passed': 3, 'deselected': 9}."""
    last = out.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r'(\d+) (\w+)', last)
            if word in ('passed', 'failed', 'skipped', 'xfailed', 'xpassed', 'deselected',
                        'error', 'errors')}


def test_sdist_runs_its_own_tests(built: Dict[str, Path], tmp_path: Path) -> None:
    top = _unpacked_sdist(built, tmp_path / 'sdist')
    for part in ('tests/_cli_helpers.py', 'tests/_paths.py', 'tests/conformance/query.jsonl',
                 'examples/quickstart.py', 'bench/run.py', 'ChangeLog', 'README.md',
                 'docs/testing.md', 'docs/development.md', '.ci/run'):
        assert (top / part).is_file(), part
    plugin_dir = tmp_path / 'plugin'
    plugin_dir.mkdir()
    (plugin_dir / 'sdist_subset.py').write_text(SUBSET_PLUGIN)
    # a collection error stops the run with a non-zero status (_check fails)
    # -n 0: the subset in one process (workers would each collect the tree again)
    out = _sdist_pytest(top, ['-n', '0', '-p', 'sdist_subset'], plugin_dir=plugin_dir)
    assert _no_failures(out), out[-2000:]
    counts = _summary_counts(out)
    # the rest of the tree was collected, among it a case per transcript line
    # (about 6,400: the transcripts are in the sdist)
    assert counts['deselected'] > 6000, out[-2000:]
    assert sum(counts.values()) > 1000, out[-2000:]  # every test, run or deselected


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the whole suite, beyond the per-test default
def test_unpacked_sdist_passes_its_whole_suite(built: Dict[str, Path], tmp_path: Path) -> None:
    # every test of the sdist but this file (which would build and unpack again)
    top = _unpacked_sdist(built, tmp_path)
    out = _sdist_pytest(top, ['--ignore', 'tests/test_packaging.py'], timeout=2400)
    assert _no_failures(out), out[-3000:]
