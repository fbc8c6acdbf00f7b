"""SiriDB asyncio driver and embedded SiriDB-compatible server.

This module holds only the version: it must stay importable without qpack so
that packaging tools can read the version before dependencies are installed.
"""

__version_info__ = (3, 0, 0, 'dev0')
__version__ = '3.0.0.dev0'
__all__ = ['__version__', '__version_info__']
