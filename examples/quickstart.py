"""Quick start: start the embedded SiriDB server in-process, connect a
SiriDBClient, insert points, query them back, close.

Run: python examples/quickstart.py   (no SiriDB installation needed)
"""
from __future__ import annotations

import asyncio
import time

from siridb.connector import SiriDBClient
from siridb.embedded import EmbeddedServer


async def main() -> None:
    # port=0: the OS picks a free port; the database 'dbtest' has second
    # precision and the default user iris / siri
    async with EmbeddedServer(port=0, databases={'dbtest': 's'}) as server:
        client = SiriDBClient(
            username='iris',
            password='siri',
            dbname='dbtest',
            hostlist=[(server.host, server.port)],
        )
        async with client:  # connects; closes on exit
            now = int(time.time())
            points = [[now - 60 * i, 20.0 + i / 2] for i in range(5, 0, -1)]
            result = await client.insert({'temperature': points})
            print(result['success_msg'])

            result = await client.query('select * from "temperature"')
            for ts, value in result['temperature']:
                print(time.strftime('%H:%M:%S', time.gmtime(ts)), value)

            result = await client.query('select mean(5m) from "temperature"')
            print('mean per 5 minutes:', result['temperature'])


if __name__ == '__main__':
    asyncio.run(main())
