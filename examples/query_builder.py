"""The query builder and typed results, against the embedded server.

Run: python examples/query_builder.py   (no SiriDB installation needed)
"""
from __future__ import annotations

import asyncio
import datetime as dt

from siridb.connector import CountSeries, ListSeries, Select, SiriDBClient
from siridb.connector.lib import results
from siridb.connector.lib.builder import regex, series
from siridb.embedded import EmbeddedServer

UTC = dt.timezone.utc
START = dt.datetime(2024, 1, 1, tzinfo=UTC)


async def main() -> None:
    async with EmbeddedServer(port=0, databases={'metrics': 'ms'}) as server:
        async with SiriDBClient('iris', 'siri', 'metrics',
                                [(server.host, server.port)]) as client:
            # two hours of one point per minute for three series, one of them
            # with a name that would break naive string formatting
            names = ['cpu.load', 'cpu.temp', 'disk "/dev/sda" usage']
            points = [(name, START + dt.timedelta(minutes=m), float(m % 60) + i)
                      for i, name in enumerate(names) for m in range(120)]
            print('written:', await client.write_many(points))

            q = (Select('mean(1h)')
                 .from_series('cpu.load')
                 .from_regex(r'cpu\..*')
                 .between(START, START + dt.timedelta(hours=2))
                 .merge_as('all cpu', using='max(1h)'))
            print('query:', q.build('ms'))
            for name, s in (await client.select(q)).items():
                for when, value in s.points:
                    print(f'  {name}: {when:%Y-%m-%d %H:%M} {value}')

            # hostile names are quoted, never pasted: this selects exactly one series
            q2 = Select('last()').from_series('disk "/dev/sda" usage')
            print('query:', q2)
            res = await client.select(q2)
            print('  ->', {k: v.values for k, v in res.items()})

            # selectors combine with | - & ^ and keep their meaning
            q3 = Select('count()').from_(regex(r'.*') - series('cpu.temp'))
            print('query:', q3)
            print('  ->', sorted((await client.query(q3)).items()))

            listed = await client.query(ListSeries('name', 'length').from_regex(r'cpu\..*'))
            print('list rows:', sorted(results.rows(listed), key=lambda r: r['name']))
            print('count:', results.count(await client.query(CountSeries())))
            show = results.show(await client.query('show time_precision, version'))
            print('show:', show)


if __name__ == '__main__':
    asyncio.run(main())
