"""Fixtures of the CLI tests: one ``siridb serve`` subprocess per test module."""
from __future__ import annotations

from typing import Iterator, List

import pytest
from _cli_helpers import ServeProcess, run_main


@pytest.fixture(scope='module')
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """``siridb serve`` shared by the tests of one module: the databases named in
    the module's ``SERVE_DBS`` (default ``dbtest``), with the rows of its
    ``SEED_CSV`` imported into ``dbtest``. Tests that share it use series,
    database and account names of their own."""
    dbs: List[str] = list(getattr(request.module, 'SERVE_DBS', ['dbtest']))
    seed: str = getattr(request.module, 'SEED_CSV', '')
    tmp = tmp_path_factory.mktemp('serve')
    srv = ServeProcess(tmp / 'serve.log', *[arg for db in dbs for arg in ('--db', db)])
    try:
        if seed:
            rows = tmp / 'seed.csv'
            rows.write_text(seed)
            proc = run_main('import', str(rows), '--db', 'dbtest', '--host', srv.addr)
            assert proc.returncode == 0, proc.stderr
        yield srv
    finally:
        srv.stop()
