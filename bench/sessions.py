"""Write sessions against bulk insert, side by side in one run.

    python bench/sessions.py                 # 300,000 points, 100 series, 3 rounds
    python bench/sessions.py --smoke         # seconds-long, for CI
    python bench/sessions.py --url siridb://iris:siri@host:9000/db  # a real server too

Each workload (``bench/session_worker.py``: ``bulk`` the reference,
``bulk_prebuilt``, ``write``, ``write_many``, ``columnar`` with
``delivery='verified'``, the same three with ``'at_least_once'``) runs in a process
of its own against a new embedded server process (``python -m
siridb.embedded``), workloads taking turns for ``--rounds`` rounds; with
``--url`` every workload also runs against that server. Each workload keeps
its best (least CPU, least wall) run; its ratios to bulk insert are the
median of the per-round ratios. Prints a table of client CPU per point and
wall throughput with ratios to bulk insert, the verified sessions' ratios
to at-least-once ones (same rounds) and the targets; then the ``recovery``
workload once (checks after failures: queries, points, time), and writes
``bench/results/sessions.json`` and ``sessions.md`` (with the command line).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import BENCH, RESULTS, embedded_server_process, env_with_checkout  # noqa: E402

WORKLOADS = ('bulk', 'bulk_prebuilt', 'write', 'write_many', 'columnar',
             'write_alo', 'write_many_alo', 'columnar_alo')
#: the session workloads in verified mode, compared with their at-least-once runs
VERIFIED = ('write', 'write_many', 'columnar')
LABELS = {
    'bulk': 'bulk insert (reference)',
    'bulk_prebuilt': 'bulk insert, dicts prebuilt',
    'write': 'session.write per point (verified)',
    'write_many': 'session.write_many (verified)',
    'columnar': 'session.write_series (verified)',
    'write_alo': 'session.write per point (at-least-once)',
    'write_many_alo': 'session.write_many (at-least-once)',
    'columnar_alo': 'session.write_series (at-least-once)',
}
#: (workload, metric, limit, higher is better)
TARGETS = (
    ('write', 'CPU us per point', 1.5, False),
    ('write_many', 'CPU per point / bulk insert', 1.3, False),
    ('columnar', 'CPU per point / bulk insert', 1.3, False),
    ('write', 'wall throughput / bulk insert', 0.8, True),
    ('write_many', 'wall throughput / bulk insert', 0.8, True),
    ('columnar', 'wall throughput / bulk insert', 0.8, True),
    ('write', 'CPU per point / at-least-once', 1.05, False),
    ('write_many', 'CPU per point / at-least-once', 1.05, False),
    ('columnar', 'CPU per point / at-least-once', 1.05, False),
)


def run_worker(ns: argparse.Namespace, workload: str, tag: str,
               target: List[str]) -> Dict[str, Any]:
    cmd = [sys.executable, str(BENCH / 'session_worker.py'), '--workload', workload,
           '--tag', tag, '--points', str(ns.points), '--series', str(ns.series),
           '--batch', str(ns.batch), '--max-in-flight', str(ns.max_in_flight),
           '--slice', str(ns.slice), '--fail-every', str(ns.fail_every), *target]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env_with_checkout(),
                          cwd=str(BENCH), timeout=1800)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {'workload': workload, 'error': ' | '.join(tail) or f'status {proc.returncode}'}
    result: Dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run_embedded(ns: argparse.Namespace, workload: str, tag: str) -> Dict[str, Any]:
    """One workload against a new embedded server in a process of its own."""
    with embedded_server_process(ns.db) as port:
        return run_worker(ns, workload, tag,
                          ['--host', '127.0.0.1', '--port', str(port), '--db', ns.db])


def best(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    errors = [r for r in runs if 'error' in r]
    if errors:
        return errors[0]
    return {'points': runs[0]['points'], 'cpu': min(r['cpu'] for r in runs),
            'wall': min(r['wall'] for r in runs), 'runs': runs}


def round_ratios(results: Dict[str, Dict[str, Any]], w: str,
                 ref_w: str = 'bulk') -> Tuple[List[float], List[float]]:
    """Per round: CPU of ``w`` / CPU of ``ref_w``, and throughput of ``w`` /
    throughput of ``ref_w`` (the two ran next to each other in that round)."""
    cpu: List[float] = []
    wall: List[float] = []
    for mine, ref in zip(results[w].get('runs', []), results[ref_w].get('runs', [])):
        cpu.append(mine['cpu'] / ref['cpu'])
        wall.append(ref['wall'] / mine['wall'])
    return cpu, wall


def summarize(results: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Best CPU and wall of each workload, and its ratios to bulk insert as
    the median of the per-round ratios: on a busy machine a quiet or busy
    spell then falls on both sides of a ratio alike."""
    rows = []
    for w in WORKLOADS:
        r = results.get(w, {})
        if 'error' in r or not r or 'error' in results.get('bulk', {'error': 1}):
            rows.append({'workload': w, 'error': r.get('error', 'not run')})
            continue
        cpu_ratios, wall_ratios = round_ratios(results, w)
        row = {'workload': w, 'cpu_us': r['cpu'] / r['points'] * 1e6,
               'kpts_s': r['points'] / r['wall'] / 1000,
               'cpu_ratio': statistics.median(cpu_ratios),
               'wall_ratio': statistics.median(wall_ratios),
               'cpu_ratios': cpu_ratios, 'wall_ratios': wall_ratios}
        alo = results.get(w + '_alo', {})
        if w in VERIFIED and alo and 'error' not in alo:
            cpu_v, wall_v = round_ratios(results, w, w + '_alo')
            row.update(cpu_vs_alo=statistics.median(cpu_v), wall_vs_alo=statistics.median(wall_v),
                       cpu_vs_alo_rounds=cpu_v, wall_vs_alo_rounds=wall_v)
        rows.append(row)
    by = {r['workload']: r for r in rows}
    verdicts = []
    for w, metric, limit, higher in TARGETS:
        r = by.get(w, {})
        key = ('cpu_us' if metric.startswith('CPU us') else
               'cpu_vs_alo' if metric.endswith('at-least-once') else
               'cpu_ratio' if metric.startswith('CPU') else 'wall_ratio')
        value = r.get(key)
        met = None if value is None else (value >= limit if higher else value <= limit)
        verdicts.append({'workload': w, 'metric': metric, 'value': value,
                         'target': f'{">=" if higher else "<="} {limit}', 'met': met})
    return {'rows': rows, 'targets': verdicts}


def fmt(v: Optional[float], digits: int = 2) -> str:
    return '-' if v is None else (f'{v:,.0f}' if abs(v) >= 1000 else f'{v:.{digits}f}')


def table(name: str, summary: Dict[str, Any]) -> List[str]:
    out = [f'### {name}', '',
           '| workload | client CPU us/point (best) | wall kpts/s (best) '
           '| CPU / bulk (median) | wall / bulk (median) '
           '| CPU / at-least-once (median) | wall / at-least-once (median) |',
           '|---|---:|---:|---:|---:|---:|---:|']
    for r in summary['rows']:
        if 'error' in r:
            out.append(f'| {LABELS[r["workload"]]} | failed: {r["error"]} | | | | | |')
            continue
        out.append(f'| {LABELS[r["workload"]]} | {fmt(r["cpu_us"])} | {fmt(r["kpts_s"], 0)} '
                   f'| {fmt(r["cpu_ratio"])} | {fmt(r["wall_ratio"])} '
                   f'| {fmt(r.get("cpu_vs_alo"))} | {fmt(r.get("wall_vs_alo"))} |')
    out.append('')
    for v in summary['targets']:
        verdict = {True: 'met', False: 'NOT met', None: 'not measured'}[v['met']]
        out.append(f'- {LABELS[v["workload"]]}: {v["metric"]} = {fmt(v["value"])} '
                   f'(target {v["target"]}): {verdict}')
    out.append('')
    return out


def recovery_table(ns: argparse.Namespace, rec: Dict[str, Any]) -> List[str]:
    """The verified session through failures (``recovery`` workload)."""
    if 'error' in rec:
        return [f'Recovery: failed: {rec["error"]}', '']
    st = rec['stats']
    fails = max(1, rec['failures'])
    return [
        f'#### After failures (verified, in-process embedded server): a partial insert '
        f'with a dropped connection every {ns.fail_every} packages, then a crash losing '
        f'the last acknowledged point (verify_settle=0: no replica to wait for)', '',
        '| failures | checks | queries | points checked | missing found | resent '
        '| check time total (s) | per failure (ms) | stored / written |',
        '|---:|---:|---:|---:|---:|---:|---:|---:|---|',
        f'| {rec["failures"]} | {st["verifications"]} | {st["verify_queries"]} '
        f'| {st["verified"]:,} | {st["missing"]:,} | {st["resent"]:,} '
        f'| {st["verify_time"]:.3f} | {st["verify_time"] / fails * 1000:.1f} '
        f'| {rec["stored"]:,} / {st["written"]:,} |', '']


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description='write session benchmarks')
    ap.add_argument('--smoke', action='store_true', help='seconds-long run (CI)')
    ap.add_argument('--url', help='also run against this server '
                                  '(siridb://user:password@host:port/db)')
    ap.add_argument('--points', type=int)
    ap.add_argument('--series', type=int, default=100)
    ap.add_argument('--batch', type=int, default=5000,
                    help='points per bulk request and autocommit_every (default 5000)')
    ap.add_argument('--max-in-flight', type=int, default=4)
    ap.add_argument('--slice', type=int, default=1000,
                    help='points per write_series call (default 1000)')
    ap.add_argument('--rounds', type=int, help='default 3, smoke 1')
    ap.add_argument('--fail-every', type=int, default=10,
                    help='recovery: a failure every this many packages (default 10)')
    ap.add_argument('--db', default='bench')
    ap.add_argument('--json', type=Path, default=RESULTS / 'sessions.json')
    ns = ap.parse_args(argv)
    if ns.points is None:
        ns.points = 20_000 if ns.smoke else 300_000
    if ns.rounds is None:
        ns.rounds = 1 if ns.smoke else 3
    targets = [('embedded server (separate process)', None)]
    if ns.url:
        targets.append(('server ' + ns.url.split('@')[-1], ns.url))  # no password
    command = 'python bench/sessions.py ' + ' '.join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    doc: Dict[str, Any] = {'meta': {
        'command': command.replace(ns.url or '\0', '<url>'),
        'points': ns.points, 'series': ns.series, 'batch': ns.batch,
        'max_in_flight': ns.max_in_flight, 'rounds': ns.rounds,
        'python': platform.python_version(),
        'machine': f'{os.cpu_count()} cores, {platform.machine()}',
        'load_before': os.getloadavg()[0] if hasattr(os, 'getloadavg') else None,
        'when': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, 'servers': {}}
    lines = [f'Write sessions against bulk insert: {ns.points:,} float points over '
             f'{ns.series} series, {ns.batch:,} per request / autocommit_every, '
             f'max_in_flight={ns.max_in_flight}, write_series of {ns.slice:,} points, '
             f'{ns.rounds} round(s): best CPU and wall of each workload, ratios to bulk '
             f'insert as the median of the per-round ratios; client process CPU only. '
             f'Python {doc["meta"]["python"]}, {doc["meta"]["machine"]}.', '',
             f'Command: `{doc["meta"]["command"]}`', '']
    failed = False
    for name, url in targets:
        runs: Dict[str, List[Dict[str, Any]]] = {w: [] for w in WORKLOADS}
        for n in range(ns.rounds):
            for w in WORKLOADS:
                tag = f'{w[:4]}{n}{int(time.time() * 1000) % 100000}'
                r = (run_worker(ns, w, tag, ['--url', url]) if url
                     else run_embedded(ns, w, tag))
                runs[w].append(r)
        results = {w: best(rs) for w, rs in runs.items()}
        summary = summarize(results)
        failed = failed or any('error' in r for r in summary['rows'])
        doc['servers'][name] = {'results': results, 'summary': summary}
        lines.extend(table(name, summary))
        if url is None:
            rec = run_worker(ns, 'recovery', f'reco{int(time.time() * 1000) % 100000}', [])
            doc['servers'][name]['recovery'] = rec
            lines.extend(recovery_table(ns, rec))
            failed = failed or 'error' in rec
    if hasattr(os, 'getloadavg'):
        doc['meta']['load_after'] = os.getloadavg()[0]
        lines.append(f'Load average (1 min) before/after: {doc["meta"]["load_before"]:.2f} / '
                     f'{doc["meta"]["load_after"]:.2f} on {os.cpu_count()} cores.')
    ns.json.parent.mkdir(parents=True, exist_ok=True)
    ns.json.write_text(json.dumps(doc, indent=2) + '\n')
    text = '\n'.join(lines)
    ns.json.with_suffix('.md').write_text(text + '\n')
    print(text)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
