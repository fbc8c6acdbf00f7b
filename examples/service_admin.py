"""Service API (type 32): databases and service accounts, then a client
configured from a URL. Against the embedded server, no SiriDB needed.

Run: python examples/service_admin.py
"""
from __future__ import annotations

import asyncio

from siridb.connector import SiriDBClient, SiriDBService
from siridb.connector.lib.exceptions import ServiceError
from siridb.embedded import EmbeddedServer


async def main() -> None:
    async with EmbeddedServer(port=0) as server:
        address = f'{server.host}:{server.port}'
        # the default service account is sa / siri
        async with SiriDBService.from_url(f'siridb://sa:siri@{address}') as svc:
            print('server version:', await svc.get_version())
            await svc.new_database('weather', time_precision='s', duration_num='1w')
            print('databases:', await svc.get_databases())
            try:
                await svc.new_database('weather')
            except ServiceError as exc:  # typed errors, with the server's text
                print('expected error:', exc)
            await svc.new_account('ops', 'ops-password')
            print('service accounts:', sorted(await svc.get_accounts()))

            # a new database has the user iris / siri; URLs are percent-decoded
            url = f'siridb://iris:siri@{address}/weather?timeout=5'
            async with SiriDBClient.from_url(url) as client:
                await client.write('temperature', 21.5, 1_700_000_000)
                print('time precision:', await client.time_precision())
                print('ping: %.2f ms' % (await client.ping() * 1000))
                print('select:', await client.query('select * from "temperature"'))

            await svc.drop_account('ops')
            await svc.drop_database('weather')
            print('databases after drop:', await svc.get_databases())


if __name__ == '__main__':
    asyncio.run(main())
