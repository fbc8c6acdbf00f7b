"""Failover demo: three embedded servers, one client, writes that keep going
while servers stop and come back, and the per-server stats.

Run: python examples/failover.py   (no SiriDB installation needed)
"""
from __future__ import annotations

import asyncio
import logging

from siridb.connector import Select, SiriDBClient
from siridb.embedded import EmbeddedCluster


def show_stats(client: SiriDBClient) -> None:
    for s in client.stats():
        print(f'  {s.host}:{s.port} up={s.up!s:5} requests={s.requests:4} '
              f'errors={s.errors} reconnects={s.reconnects}')


async def main() -> None:
    # three listeners sharing one store: each plays a server of a cluster
    async with EmbeddedCluster(n=3, databases={'dbtest': 'ms'}) as cluster:
        # the third server is a backup: used only when the others are down
        hostlist = [*cluster.hostlist[:2], (*cluster.hostlist[2], {'backup': True})]
        client = SiriDBClient('iris', 'siri', 'dbtest', hostlist,
                              backoff_base=0.1, max_wait_retry=1, inactive_time=0.5)
        async with client:
            print('ping:', f'{await client.ping() * 1000:.2f} ms,',
                  'server version', await client.server_version())
            # The session checks a package whose outcome a stop left unknown.
            # These listeners share one store, so the check need not wait for
            # the stopped ones to return, nor for replicas to catch up; against
            # a real cluster keep the defaults (verify_wait=30, verify_settle=5).
            async with client.session(autocommit_every=50, flush_interval=0.05,
                                      retry_delay=0.05, retry_max_delay=0.5,
                                      verify_wait=0.2, verify_settle=0) as session:
                ts = 1_700_000_000_000

                async def write_for(seconds: float) -> None:
                    nonlocal ts
                    loop = asyncio.get_running_loop()
                    end = loop.time() + seconds
                    while loop.time() < end:
                        await session.write('demo.counter', ts % 1000, ts)
                        ts += 1
                        await asyncio.sleep(0.002)

                await write_for(0.3)
                for step, server in enumerate(cluster.servers[:2]):
                    await server.stop()
                    print(f'step {step + 1}: stopped {server.name}')
                    await write_for(0.4)
                await session.commit()
                print('both primaries down, writes went to the backup:')
                show_stats(client)
                for server in cluster.servers[:2]:
                    await server.start()
                print('primaries started again')
                await write_for(1.5)
            print('after the restarts:')
            show_stats(client)
            # count through the driver: checked delivery, so exactly what was written
            result = await client.query(Select('count()').from_series('demo.counter'))
            (_, stored), = result['demo.counter']
        written = session.written
        print(f'written={written} stored={stored} '
              f'{"nothing lost" if stored >= written else "LOST POINTS"}'
              f'{", no duplicates" if stored == written else ""}')

if __name__ == '__main__':
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main())
