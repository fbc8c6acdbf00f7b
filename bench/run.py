"""Client-side benchmarks: this driver against the raw qpack limit and 2.1.6.

    python bench/run.py                    # full run (1,000,000 points)
    python bench/run.py --smoke            # seconds-long, for CI
    python bench/run.py --legacy-venv DIR  # also siridb-connector 2.1.6
    python bench/run.py --server HOST:PORT --db NAME  # against a real SiriDB

Runs each workload of each client in its own process (``bench/worker.py``)
against its own new embedded server process (``python -m siridb.embedded``):
``raw`` (hand-written minimal client + in-memory packb/unpackb), ``ours`` (this
checkout) and, with ``--legacy-venv``, ``2.1.6`` (installed into that venv
with pip when missing), taking turns for ``--rounds`` rounds. Prints a table
and writes ``bench/results/latest.json`` (and the table as ``latest.md``).
Numbers are the CLIENT process's CPU time; the server's cost is not counted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / 'bench'
RESULTS = BENCH / 'results'
LEGACY_REQ = 'siridb-connector==2.1.6'

#: targets from the issue: (metric, limit, higher is better)
TARGETS = {
    'bulk': ('ours CPU / raw packb+send CPU', 1.15, False),
    'small': ('ours ops/s / 2.1.6 ops/s', 1.3, True),
    'decode': ('ours CPU / raw unpackb CPU', 1.1, False),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f'embedded server exited with status {proc.returncode}')
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f'embedded server did not listen on port {port} in {timeout} s')


def env_with_checkout() -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = str(ROOT) + (os.pathsep + env['PYTHONPATH']
                                     if env.get('PYTHONPATH') else '')
    return env


@contextmanager
def embedded_server_process(db: str) -> Iterator[int]:
    """A new embedded server in a process of its own (its CPU is not the
    client's); yields its port on 127.0.0.1 and stops it afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, '-m', 'siridb.embedded', '--host', '127.0.0.1',
         '--port', str(port), '--db', db],
        cwd=str(ROOT), env=env_with_checkout(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, server)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def legacy_python(venv: Path) -> Path:
    """The venv's interpreter, creating the venv with 2.1.6 when missing."""
    py = venv / 'bin' / 'python'
    if not py.exists():
        print(f'creating {venv} with {LEGACY_REQ} ...', file=sys.stderr)
        subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    check = subprocess.run([str(py), '-c', 'import siridb.connector'],
                           cwd=str(venv), capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(py), '-m', 'pip', 'install', '-q', LEGACY_REQ], check=True)
    return py


def run_worker(python: str, impl: str, tag: str, host: str, port: int,
               ns: argparse.Namespace, env: Dict[str, str],
               workload: str) -> Dict[str, Any]:
    cmd = [python, str(BENCH / 'worker.py'), '--impl', impl, '--tag', tag,
           '--workloads', workload,
           '--host', host, '--port', str(port), '--db', ns.db,
           '--points', str(ns.points), '--batch', str(ns.batch),
           '--small', str(ns.small), '--inflight', str(ns.inflight),
           '--reps', str(ns.reps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(BENCH),
                          timeout=1800)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {'impl': tag, 'error': ' | '.join(tail) or f'status {proc.returncode}'}
    result: Dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result['impl'] = tag
    return result


def run_client(python: str, impl: str, tag: str, ns: argparse.Namespace,
               env: Dict[str, str]) -> Dict[str, Any]:
    """Every workload of one client, each in a process of its own: a
    workload then meets the C allocator as a new process leaves it, never in
    the state an earlier workload happened to leave (which decided whether a
    10,000-point insert got its buffers as fresh pages: 0 or ~50 page faults,
    up to 20 % of its CPU)."""
    out: Dict[str, Any] = {}
    for workload in ('small', 'bulk', 'decode'):
        result = run_fresh(python, impl, f'{tag}{workload[0]}', ns, env, workload)
        if 'error' in result:
            return result
        out.update(result)
    out['impl'] = tag
    return out


def run_fresh(python: str, impl: str, tag: str, ns: argparse.Namespace,
              env: Dict[str, str], workload: str) -> Dict[str, Any]:
    """One worker against its own, new embedded server process, so that no
    client meets a server already holding the points of the one before.
    With ``--server`` every worker uses that server instead."""
    if ns.server:
        host, _, port_text = ns.server.rpartition(':')
        return run_worker(python, impl, tag, host, int(port_text), ns, env, workload)
    with embedded_server_process(ns.db) as port:
        return run_worker(python, impl, tag, '127.0.0.1', port, ns, env, workload)


def merge_rounds(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One worker result from several rounds: every workload keeps all its
    runs and the best (least CPU, least wall) of them; a failed round fails."""
    for r in results:
        if 'error' in r:
            return r
    out = dict(results[0])
    for key in ('small', 'bulk', 'decode'):
        if key not in out:
            continue
        runs = [run for r in results for run in r[key]['runs']]
        out[key] = dict(out[key], runs=runs, cpu=min(run[0] for run in runs),
                        wall=min(run[1] for run in runs))
        users = [run[3] for run in runs if len(run) > 3]
        if users:
            out[key]['user'] = min(users)
    for key in ('limit_packb', 'limit_unpackb'):
        if key in out:
            out[key] = dict(out[key], cpu=min(r[key]['cpu'] for r in results))
            if all('user' in r[key] for r in results):
                out[key]['user'] = min(r[key]['user'] for r in results)
    return out


def best_run_faults(d: Optional[Dict[str, Any]], key: str) -> Optional[int]:
    """Page faults of the least-CPU run of workload ``key``."""
    runs = (d or {}).get(key, {}).get('runs') or []
    runs = [run for run in runs if len(run) > 2]
    return min(runs)[2] if runs else None


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return a / b


def get(d: Optional[Dict[str, Any]], *keys: str) -> Optional[float]:
    cur: Any = d
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return float(cur) if isinstance(cur, (int, float)) else None


def summarize(raw: Dict[str, Any], ours: Dict[str, Any],
              legacy: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Derived figures and target verdicts."""
    out: Dict[str, Any] = {}
    pts = get(ours, 'bulk', 'points')
    ops = get(ours, 'small', 'ops')

    def per_point(d: Optional[Dict[str, Any]], *k: str) -> Optional[float]:
        v = get(d, *k)
        return None if v is None or not pts else v / pts * 1e6

    def rate(d: Optional[Dict[str, Any]]) -> Optional[float]:
        w = get(d, 'small', 'wall')
        return None if w is None or not ops else ops / w

    def cpu_rate(d: Optional[Dict[str, Any]]) -> Optional[float]:
        c = get(d, 'small', 'cpu')
        return None if not c or not ops else ops / c

    def cpu_op(d: Optional[Dict[str, Any]]) -> Optional[float]:
        c = get(d, 'small', 'cpu')
        return None if c is None or not ops else c / ops * 1e6

    rows: List[Dict[str, Any]] = []

    def row(name: str, unit: str, r: Optional[float], o: Optional[float],
            lg: Optional[float], lim: Optional[float] = None) -> None:
        rows.append({'workload': name, 'unit': unit, 'limit': lim, 'raw': r, 'ours': o,
                     'legacy': lg, 'ours/raw': ratio(o, r), 'ours/legacy': ratio(o, lg)})

    row('bulk insert: CPU per point', 'us', per_point(raw, 'bulk', 'cpu'),
        per_point(ours, 'bulk', 'cpu'), per_point(legacy, 'bulk', 'cpu'),
        per_point(raw, 'limit_packb', 'cpu'))
    row('bulk insert: wall throughput', 'kpts/s',
        ratio(pts, get(raw, 'bulk', 'wall')), ratio(pts, get(ours, 'bulk', 'wall')),
        ratio(pts, get(legacy, 'bulk', 'wall')))
    row('small requests: CPU per op', 'us', cpu_op(raw), cpu_op(ours), cpu_op(legacy))
    row('small requests: wall throughput', 'ops/s', rate(raw), rate(ours), rate(legacy))
    row('small requests: ops per client CPU-s', 'ops/s', cpu_rate(raw), cpu_rate(ours),
        cpu_rate(legacy))
    row('decode select: CPU per point', 'us', per_point(raw, 'decode', 'cpu'),
        per_point(ours, 'decode', 'cpu'), per_point(legacy, 'decode', 'cpu'),
        per_point(raw, 'limit_unpackb', 'cpu'))
    for r in rows:
        if r['unit'] == 'kpts/s':
            for k in ('raw', 'ours', 'legacy'):
                if r[k] is not None:
                    r[k] /= 1000.0
    out['rows'] = rows

    verdicts: Dict[str, Any] = {}
    bulk = ratio(get(ours, 'bulk', 'cpu'), get(raw, 'bulk', 'cpu'))
    small = ratio(rate(ours), rate(legacy))
    out['small_client_bound_ratio'] = ratio(cpu_rate(ours), cpu_rate(legacy))
    out['decode_limit_gc_on_us'] = per_point(raw, 'limit_unpackb', 'cpu_gc_on')
    decode = ratio(get(ours, 'decode', 'cpu'), get(raw, 'limit_unpackb', 'cpu'))
    # user-space CPU alone: leaves out the kernel's share (receiving the
    # reply from the socket, which unpackb in memory does not do, and
    # page faults), the part that moves most between runs
    out['decode_user_us'] = {
        name: per_point(d, *keys, 'user')
        for name, d, keys in (('qpack only', raw, ('limit_unpackb',)),
                              ('raw', raw, ('decode',)), ('ours', ours, ('decode',)),
                              ('2.1.6', legacy, ('decode',)))}
    out['decode_user_ratio'] = ratio(get(ours, 'decode', 'user'),
                                     get(raw, 'limit_unpackb', 'user'))
    for key, value in (('bulk', bulk), ('small', small), ('decode', decode)):
        what, limit, higher = TARGETS[key]
        met = None if value is None else (value >= limit if higher else value <= limit)
        verdicts[key] = {'metric': what, 'value': value,
                         'target': f'{">=" if higher else "<="} {limit}', 'met': met}
    out['targets'] = verdicts
    requests = get(ours, 'bulk', 'requests')
    out['bulk_faults_per_request'] = {
        name: (None if f is None or not requests else f / requests)
        for name, f in (('raw', best_run_faults(raw, 'bulk')),
                        ('ours', best_run_faults(ours, 'bulk')),
                        ('2.1.6', best_run_faults(legacy, 'bulk')))}
    return out


def fmt(v: Optional[float], digits: int = 2) -> str:
    if v is None:
        return '-'
    if abs(v) >= 1000:
        return f'{v:,.0f}'
    return f'{v:.{digits}f}'


def table(summary: Dict[str, Any], meta: Dict[str, Any]) -> str:
    head = ['workload', 'unit', 'qpack only', 'raw client', 'ours', '2.1.6',
            'ours/raw', 'ours/2.1.6']
    lines = [head]
    for r in summary['rows']:
        lines.append([r['workload'], r['unit'], fmt(r['limit']), fmt(r['raw']),
                      fmt(r['ours']), fmt(r['legacy']), fmt(r['ours/raw']),
                      fmt(r['ours/legacy'])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = []
    for n, line in enumerate(lines):
        cells = [c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                 for i, c in enumerate(line)]
        text.append('| ' + ' | '.join(cells) + ' |')
        if n == 0:
            text.append('|' + '|'.join('-' * (w + 2) if i < 2 else '-' * (w + 1) + ':'
                                       for i, w in enumerate(widths)) + '|')
    text.append('')
    for key, v in summary['targets'].items():
        verdict = {True: 'met', False: 'NOT met', None: 'not measured'}[v['met']]
        text.append(f'- target {key}: {v["metric"]} = {fmt(v["value"])} '
                    f'(target {v["target"]}): {verdict}')
    if summary.get('small_client_bound_ratio') is not None:
        text.append(f'- small requests, client-bound (ops per client CPU-second): ours/2.1.6 '
                    f'= {fmt(summary["small_client_bound_ratio"])}')
    users = summary.get('decode_user_us') or {}
    # a ratio is '-' when the limit's user time rounds to 0 (a short run)
    if any(v is not None for v in users.values()):
        text.append('- decode, user-space CPU only (us per point): ' + ', '.join(
            f'{k} {fmt(v, 3)}' for k, v in users.items() if v is not None)
            + f'; ours/qpack only = {fmt(summary["decode_user_ratio"])}')
    text.append('')
    text.append('"qpack only": packb of the same batches; unpackb of the same reply with '
                'the GC paused')
    if summary.get('decode_limit_gc_on_us') is not None:
        text.append(f'({fmt(summary["decode_limit_gc_on_us"])} us per point with the GC on). '
                    f'"raw client": a minimal hand-written asyncio client.')
    text.append(f'{meta["points"]:,} points in requests of {meta["batch"]:,}; '
                f'{meta["small_ops"]:,} small requests, {meta["inflight"]} in flight; '
                f'best of {meta["reps"]} run(s) x {meta.get("rounds", 1)} round(s); '
                f'Python {meta["python"]}, {meta["machine"]}.')
    faults = summary.get('bulk_faults_per_request') or {}
    if any(v is not None for v in faults.values()):
        text.append('Page faults per bulk request in the best run: ' + ', '.join(
            f'{k} {fmt(v, 1)}' for k, v in faults.items() if v is not None) + '.')
    return '\n'.join(text)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description='siridb-connector client benchmarks')
    ap.add_argument('--smoke', action='store_true', help='seconds-long run (CI)')
    ap.add_argument('--legacy-venv', type=Path,
                    help=f'venv with {LEGACY_REQ} (created when missing)')
    ap.add_argument('--points', type=int)
    ap.add_argument('--batch', type=int, default=10_000)
    ap.add_argument('--small', type=int)
    ap.add_argument('--inflight', type=int, default=256)
    ap.add_argument('--reps', type=int, help='runs of each workload (best is kept)')
    ap.add_argument('--rounds', type=int,
                    help='times each client process is started, in turns '
                         '(default 2, smoke 1); the best run of all is kept')
    ap.add_argument('--server', metavar='HOST:PORT',
                    help='use this running SiriDB (user iris/siri) instead of '
                         'starting embedded servers')
    ap.add_argument('--db', default='bench', help='database name (default bench)')
    ap.add_argument('--json', type=Path, default=RESULTS / 'latest.json')
    ns = ap.parse_args(argv)
    if ns.points is None:
        ns.points = 20_000 if ns.smoke else 1_000_000
    if ns.small is None:
        ns.small = 2_048 if ns.smoke else 25_600
    if ns.reps is None:
        ns.reps = 1 if ns.smoke else 3
    if ns.rounds is None:
        ns.rounds = 1 if ns.smoke else 2

    legacy_py: Optional[str] = None
    legacy_env = dict(os.environ)
    legacy_env.pop('PYTHONPATH', None)
    if ns.legacy_venv is not None:
        legacy_py = str(legacy_python(ns.legacy_venv.resolve()))
    # the clients take turns, round after round, so that a slower or
    # quieter spell of this shared machine falls on all of them alike
    rounds: Dict[str, List[Dict[str, Any]]] = {'raw': [], 'ours': [], 'legacy': []}
    for n in range(ns.rounds):
        rounds['raw'].append(run_client(sys.executable, 'raw', f'raw{n}', ns,
                                        env_with_checkout()))
        rounds['ours'].append(run_client(sys.executable, 'client', f'ours{n}', ns,
                                         env_with_checkout()))
        if legacy_py is not None:
            rounds['legacy'].append(run_client(legacy_py, 'client', f'legacy{n}', ns,
                                               legacy_env))
    raw = merge_rounds(rounds['raw'])
    ours = merge_rounds(rounds['ours'])
    legacy = merge_rounds(rounds['legacy']) if rounds['legacy'] else None

    command = ' '.join(['python bench/run.py', *(argv if argv is not None else sys.argv[1:])])
    meta = {'points': ns.points, 'batch': ns.batch, 'small_ops': ns.small,
            'inflight': ns.inflight, 'reps': ns.reps, 'rounds': ns.rounds,
            'python': platform.python_version(),
            'machine': f'{os.cpu_count()} cores, {platform.machine()}',
            'smoke': ns.smoke, 'command': command,
            'when': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
    errors = [w for w in (raw, ours, legacy) if w is not None and 'error' in w]
    summary = summarize(raw, ours, legacy) if not errors else {'rows': [], 'targets': {}}
    doc = {'meta': meta, 'raw': raw, 'ours': ours, 'legacy': legacy, 'summary': summary}
    ns.json.parent.mkdir(parents=True, exist_ok=True)
    ns.json.write_text(json.dumps(doc, indent=2) + '\n')
    if errors:
        for w in errors:
            print(f'{w["impl"]}: FAILED: {w["error"]}', file=sys.stderr)
        return 1
    text = table(summary, meta)
    ns.json.with_suffix('.md').write_text(f'Command: `{command}`\n\n{text}\n')
    print(text)
    print(f'\n(json: {ns.json}; table: {ns.json.with_suffix(".md")})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
