"""The parse tree of the query language: one TypedDict per statement kind.

Statements stay plain dicts at run time (TypedDicts cost nothing to build,
which keeps the parser as fast as it was); the types say which keys each
kind has. Expressions (selectors, where clauses, time expressions) are
tuples tagged by their first item (``Expr``).
"""
from __future__ import annotations

from typing import Any, List, Literal, Optional, Tuple, TypedDict, Union

__all__ = [
    'Expr', 'AggrFn', 'SelectAggr', 'Merge', 'SelectStmt', 'ListStmt', 'CountStmt',
    'ShowStmt', 'HelpStmt', 'CalcStmt', 'EmptyStmt', 'UnsupportedStmt',
    'CreateGroupStmt', 'CreateUserStmt', 'AlterDatabaseStmt', 'AlterGroupStmt',
    'AlterSeriesStmt', 'AlterTagStmt', 'AlterUserStmt', 'AlterServerStmt',
    'DropGroupStmt', 'DropTagStmt', 'DropUserStmt', 'DropSeriesStmt', 'GrantStmt',
    'RevokeStmt', 'AdminStmt', 'Statement',
]

#: a selector, where clause or time expression: a tuple tagged by its first item
Expr = Tuple[Any, ...]


class _AggrFn(TypedDict):
    fn: str


class AggrFn(_AggrFn, total=False):
    """One function of an aggregation chain (``mean(1h)``, ``filter(> 5)``...)."""

    pos: int
    group: Optional[Expr]
    ts_unit: Optional[Expr]
    offset: Expr
    limit: Expr
    limit_fn: str
    op: str
    operand: Expr


class SelectAggr(TypedDict):
    """One aggregation chain of a select, with its name prefix and suffix."""

    chain: List[AggrFn]
    prefix: str
    suffix: str


#: ``merge as NAME [using CHAIN]``
Merge = Tuple[str, Optional[List[AggrFn]]]


class _Stmt(TypedDict, total=False):
    #: set on every statement once parsed
    timeit: bool


class SelectStmt(_Stmt):
    kind: Literal['select']
    aggrs: List[SelectAggr]
    selector: Expr
    where: Optional[Expr]
    range: Optional[Expr]
    merge: Optional[Merge]


class ListStmt(_Stmt):
    kind: Literal['list']
    target: str
    selector: Optional[Expr]
    where: Optional[Expr]
    limit: Optional[Expr]
    columns: List[str]


class _CountStmt(_Stmt):
    kind: Literal['count']
    target: str
    length: bool
    selector: Optional[Expr]
    where: Optional[Expr]


class CountStmt(_CountStmt, total=False):
    #: the counted property (``count series length``, ``count servers received_points``)
    what: str


class ShowStmt(_Stmt):
    kind: Literal['show']
    props: Optional[List[str]]


class HelpStmt(_Stmt):
    kind: Literal['help']
    topic: List[str]


class CalcStmt(_Stmt):
    kind: Literal['calc']
    expr: Expr


class EmptyStmt(_Stmt):
    kind: Literal['empty']


class UnsupportedStmt(_Stmt):
    """A statement of the real server the embedded one lacks (parsed in full)."""

    kind: Literal['unsupported']
    what: str


class CreateGroupStmt(_Stmt):
    kind: Literal['create_group']
    name: str
    regex: Tuple[str, bool]


class CreateUserStmt(_Stmt):
    kind: Literal['create_user']
    name: str
    password: str


class _AlterDatabaseStmt(_Stmt):
    kind: Literal['alter_database']
    prop: str


class AlterDatabaseStmt(_AlterDatabaseStmt, total=False):
    #: a string, a number text, a time expression or False (``tee false``)
    value: Any
    ignore_threshold: bool


class AlterGroupStmt(_Stmt):
    kind: Literal['alter_group']
    name: str
    prop: str
    #: the regex for ``expression``, the new name for ``name``
    value: Any


class _AlterSeriesStmt(_Stmt):
    kind: Literal['alter_series']
    selector: Expr


class AlterSeriesStmt(_AlterSeriesStmt, total=False):
    where: Optional[Expr]
    action: str
    tag: str


class AlterTagStmt(_Stmt):
    kind: Literal['alter_tag']
    name: str
    value: str


class AlterUserStmt(_Stmt):
    kind: Literal['alter_user']
    name: str
    prop: str
    value: str


class _AlterServerStmt(_Stmt):
    kind: Literal['alter_server']
    server: Optional[str]
    where: Optional[Expr]


class AlterServerStmt(_AlterServerStmt, total=False):
    log_level: str


class DropGroupStmt(_Stmt):
    kind: Literal['drop_group']
    name: str


class DropTagStmt(_Stmt):
    kind: Literal['drop_tag']
    name: str


class DropUserStmt(_Stmt):
    kind: Literal['drop_user']
    name: str


class _DropSeriesStmt(_Stmt):
    kind: Literal['drop_series']
    selector: Optional[Expr]


class DropSeriesStmt(_DropSeriesStmt, total=False):
    where: Optional[Expr]
    ignore_threshold: bool


class DropShardsStmt(_Stmt):
    kind: Literal['drop_shards']
    where: Optional[Expr]
    ignore_threshold: bool


class _GrantStmt(_Stmt):
    kind: Literal['grant']
    access: List[str]
    name: str


class GrantStmt(_GrantStmt, total=False):
    password: Optional[str]


class RevokeStmt(_Stmt):
    kind: Literal['revoke']
    access: List[str]
    name: str


#: the statements ``run_admin`` runs (they change a database)
AdminStmt = Union[CreateGroupStmt, CreateUserStmt, AlterDatabaseStmt, AlterGroupStmt,
                  AlterSeriesStmt, AlterTagStmt, AlterUserStmt, AlterServerStmt,
                  DropGroupStmt, DropTagStmt, DropUserStmt, DropSeriesStmt, GrantStmt,
                  RevokeStmt]
#: any parsed statement
Statement = Union[SelectStmt, ListStmt, CountStmt, ShowStmt, HelpStmt, CalcStmt, EmptyStmt,
                  UnsupportedStmt, DropShardsStmt, AdminStmt]
