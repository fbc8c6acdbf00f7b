"""An ingestion daemon: a write session with autocommit, a server restart in
the middle, and a graceful shutdown on SIGTERM/SIGINT that loses nothing.

Run: python examples/ingest_daemon.py            (runs 3 s, then stops itself)
     python examples/ingest_daemon.py --duration 0   (runs until SIGTERM/Ctrl-C)
     python examples/ingest_daemon.py --url 'siridb://iris:siri@host:9000/db'
Without --url it starts the embedded server in-process (no SiriDB needed).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import time
from typing import Optional

from siridb.connector import SiriDBClient, WriteSession
from siridb.embedded import EmbeddedServer


async def produce(session: WriteSession, stop: asyncio.Event, rate: float) -> int:
    """Simulated sensors: one point per sensor every 1/rate seconds."""
    sent = 0
    while not stop.is_set():
        now = time.time()
        for sensor in range(4):
            value = round(20 + 5 * math.sin(now / 10 + sensor), 3)
            # timestamp as float seconds: converted exactly to the db precision
            await session.write(f'sensor.{sensor}.temperature', value, now)
            sent += 1
        try:
            await asyncio.wait_for(stop.wait(), 1 / rate)
        except asyncio.TimeoutError:
            pass
    return sent


async def main(url: Optional[str], duration: float, rate: float, restart: bool) -> int:
    server: Optional[EmbeddedServer] = None
    if url is None:
        server = EmbeddedServer(port=0, databases={'sensors': 'us'})
        await server.start()
        url = f'siridb://iris:siri@{server.host}:{server.port}/sensors'
    client = SiriDBClient.from_url(url, backoff_base=0.1, max_wait_retry=2,
                                   inactive_time=0.5)
    await client.connect()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if duration > 0:
        loop.call_later(duration, stop.set)

    # After a lost connection the session checks what the server holds; a
    # real cluster gets 5 s for replicas to catch up first, the one embedded
    # server has none to wait for.
    session = client.session(autocommit_every=200, flush_interval=0.25,
                             max_buffer_points=10_000, retry_delay=0.05,
                             retry_max_delay=1.0,
                             verify_settle=5.0 if server is None else 0.0)
    producer = asyncio.ensure_future(produce(session, stop, rate))
    print('running: writing 4 series; send SIGTERM (or Ctrl-C) to stop', flush=True)

    if restart and server is not None:
        await asyncio.sleep(min(1.0, duration / 3 if duration > 0 else 1.0))
        await server.stop()
        print('server stopped: points wait in the session buffer', flush=True)
        await asyncio.sleep(0.5)
        await server.start()
        print('server started again', flush=True)

    sent = await producer
    print(f'stopping: {session.pending} point(s) still pending, flushing...', flush=True)
    await session.close(timeout=30)  # flushes; raises if anything could not be written
    st = session.stats()
    print(f'produced={sent} written={st.written} retried={st.retried} '
          f'pending={st.pending} rejected={st.rejected}', flush=True)

    status = 0
    if server is not None:
        stored = sum(len(s) for s in server.store.databases['sensors'].series.values())
        # every produced point is stored (the session checks before it resends)
        if stored >= sent and st.pending == 0:
            print(f'server holds {stored} point(s): nothing lost', flush=True)
        else:
            print(f'LOST POINTS: server holds {stored} of {sent}', flush=True)
            status = 1
    client.close()
    await client.wait_closed()
    if server is not None:
        await server.stop()
    return status


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--url', help='siridb://user:password@host:port/dbname')
    parser.add_argument('--duration', type=float, default=3.0,
                        help='seconds to run (0: until SIGTERM)')
    parser.add_argument('--rate', type=float, default=200.0, help='rounds per second')
    parser.add_argument('--no-restart', action='store_true',
                        help='do not restart the embedded server mid-run')
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    raise SystemExit(asyncio.run(main(args.url, args.duration, args.rate,
                                      not args.no_restart)))
