"""How a server's host routes are laid out for Caddy, so the 10,000th host is found nearly as fast as the first. Pure.

Caddy tries a server's routes in order: with one route per host, a request for the
last of N hosts runs N host matchers first (measured in BENCHMARKS.md: ~8 times the
first host's latency at 10,000 routes). Caddy 2.6.2's `host` matcher binary-searches
the exact names of a list longer than 100 entries (`MatchHost.large()` in
modules/caddyhttp/matchers.go), so above GROUP_MIN_ROUTES routes the renderer's
flat list is regrouped:

- exact hosts are spread over about √N buckets (a power of two, and more than 128 hosts
  per bucket on average, so Caddy binary-searches most lists) by a CRC-32 of the host;
  each bucket becomes one outer route matching the bucket's host list whose handler is
  a subroute holding the bucket's own routes, unchanged and in their order. A request
  runs about √N list lookups and then ~√N routes instead of N routes. Membership
  depends on the host alone and the bucket count only changes when the number of hosts
  crosses a power of two, so adding a route changes one group;
- wildcards (`*.example.com` matches exactly one more label, like Caddy's matcher) come
  after every exact host, as in the flat order, grouped by label count (deepest first)
  and bucketed by the label after `*.`; the outer route matches that label with a
  `vars` matcher on `{http.request.host.labels.N}` (a string comparison per entry;
  Caddy's host matcher compares wildcards one by one, splitting both names each time);
- outer routes are not terminal, so a request their inner routes do not take goes on
  to the next group and finally to the catch-all, exactly as in the flat list;
- Caddy's automatic HTTPS collects the names it gets certificates for from the host
  matchers of a server's top-level routes only (modules/caddyhttp/autohttps.go): the
  exact groups list their hosts, and a route after the catch-all (so never reached)
  lists the wildcards.

Caddy 2.6.2 compares large host lists and host labels case-sensitively (fixed later,
caddyserver/caddy commit 1f43e85 "Use case-insensitive comparison for large Host
lists", v2.11), while a one-host matcher ignores case. So a grouped server starts with
a route that lowercases the Host of the (rare) request that holds an upper-case ASCII
letter; backends then see the lowercased host name (host names are case-insensitive,
RFC 4343).

The inner routes are the renderer's route objects themselves (shared, not copied):
their `@id`s, handlers and matchers are unchanged, and `ungroup` gives the flat list
back for planning, so a plan still shows changes per route.
"""

from __future__ import annotations

import functools
import itertools
import string
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

GROUP_MIN_ROUTES = 256  # below this, the flat list is already fast (measured: bench/routing.py)
EXACT_BUCKET_MIN = 128  # Caddy 2.6.2 binary-searches host lists longer than 100
GROUP_KIND = "group"  # outer routes: caddy_id(GROUP_KIND, "exact", "<bucket>") etc.
HOST_CASE_KIND = "host-case"  # the route lowercasing the Host of a request: caddy_id(HOST_CASE_KIND)
HOST_NAMES_KIND = "host-names"  # the never-reached route naming the wildcards: caddy_id(HOST_NAMES_KIND)

MakeId = Callable[..., str]


def _single_host(route: Any) -> str | None:
    """The host of a route matching exactly one host and nothing else (what the renderer writes per route)."""
    if not isinstance(route, dict):
        return None
    match = route.get("match")
    if not (isinstance(match, list) and len(match) == 1 and isinstance(match[0], dict) and len(match[0]) == 1):
        return None
    hosts = match[0].get("host")
    if isinstance(hosts, list) and len(hosts) == 1 and isinstance(hosts[0], str):
        return hosts[0]
    return None


def _depth(host: str) -> int:
    return host.count(".") + 1


def _buckets(count: int) -> int:
    """2**k with 4**k <= count: about √count buckets, changing only when count crosses a power of four."""
    return 1 << ((max(count, 1).bit_length() - 1) // 2)


def _exact_buckets(count: int) -> int:
    """As `_buckets`, but with more than EXACT_BUCKET_MIN hosts per bucket on average, so that most host
    lists are 'large' and binary-searched; changes only when count crosses a power of two."""
    return min(_buckets(count), 1 << max(0, (count // EXACT_BUCKET_MIN).bit_length() - 1))


def _bucket(key: str, buckets: int) -> int:
    return zlib.crc32(key.encode()) % buckets


def _wildcard_label(host: str) -> str:
    return host.split(".", 2)[1]  # "*.tenant.example.com" -> "tenant"


def _exact_shell(group_id: str, inner: Sequence[dict[str, Any]]) -> dict[str, Any]:
    hosts = sorted(str(_single_host(r)) for r in inner)
    return {"@id": group_id, "match": [{"host": hosts}], "handle": [{"handler": "subroute", "routes": list(inner)}]}


def _wildcard_shell(group_id: str, depth: int, inner: Sequence[dict[str, Any]]) -> dict[str, Any]:
    labels = sorted({_wildcard_label(str(_single_host(r))) for r in inner})
    # Labels are counted from the right: in a host of `depth` labels, the one after '*' is number depth-2.
    key = f"{{http.request.host.labels.{depth - 2}}}"
    handle = [{"handler": "subroute", "routes": list(inner)}]
    return {"@id": group_id, "match": [{"vars": {key: labels}}], "handle": handle}


def host_case_route(make_id: MakeId) -> dict[str, Any]:
    """Lowercases the Host of a request holding an upper-case ASCII letter (see the module's docstring)."""
    return {
        "@id": make_id(HOST_CASE_KIND),
        "match": [{"header_regexp": {"Host": {"pattern": "[A-Z]"}}}],
        "handle": [
            {
                "handler": "headers",
                "request": {"replace": {"Host": [{"search": c, "replace": c.lower()} for c in string.ascii_uppercase]}},
            }
        ],
    }


def host_names_route(make_id: MakeId, wildcards: Sequence[str]) -> dict[str, Any]:
    """Placed after the catch-all, so never reached: Caddy's automatic HTTPS takes the names it manages
    certificates for from the host matchers of a server's top-level routes only (autohttps.go), and the
    wildcard groups match a host label instead."""
    return {
        "@id": make_id(HOST_NAMES_KIND),
        "match": [{"host": sorted(wildcards)}],
        "handle": [{"handler": "static_response", "status_code": 404}],
        "terminal": True,
    }


def _ends_with_catch_all(routes: Sequence[Any]) -> bool:
    return (
        bool(routes) and isinstance(routes[-1], dict) and "match" not in routes[-1] and bool(routes[-1].get("terminal"))
    )


def _in_flat_order(hosts: Sequence[str]) -> bool:
    """Exact hosts first, then wildcards with more labels first: the order the renderer writes."""
    keys = [(1 if h.startswith("*.") else 0, -_depth(h)) for h in hosts]
    return all(a <= b for a, b in itertools.pairwise(keys))


def group_routes(
    routes: Sequence[dict[str, Any]], make_id: MakeId, shells: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """`routes` (one per host, in the renderer's order, then anything else such as the catch-all) laid out
    in groups when there are at least GROUP_MIN_ROUTES of them; otherwise unchanged. Inputs are not modified.

    `shells` (the render cache's, by group @id) hands back the outer route written before for exactly the
    same route objects, so an unchanged group is the same object from render to render (a plan then
    compares it by identity: targets/caddy_memory.py); it is updated with the groups written now."""
    count = 0
    hosts: list[str] = []
    for route in routes:
        host = _single_host(route)
        if host is None:
            break
        hosts.append(host)
        count += 1
    if count < GROUP_MIN_ROUTES or not _in_flat_order(hosts) or len(set(hosts)) != count:
        return list(routes)
    if not _ends_with_catch_all(routes[count:]):
        return list(routes)  # the route naming the wildcards must never be reached
    exact: dict[int, list[dict[str, Any]]] = {}
    wildcard: dict[int, dict[int, list[dict[str, Any]]]] = {}
    exact_count = sum(1 for h in hosts if not h.startswith("*."))
    by_depth: dict[int, int] = {}
    for host in hosts[exact_count:]:
        by_depth[_depth(host)] = by_depth.get(_depth(host), 0) + 1
    exact_buckets = _exact_buckets(exact_count)
    for route, host in zip(routes[:count], hosts, strict=True):
        if not host.startswith("*."):
            exact.setdefault(_bucket(host, exact_buckets), []).append(route)
        else:
            depth = _depth(host)
            bucket = _bucket(_wildcard_label(host), _buckets(by_depth[depth]))
            wildcard.setdefault(depth, {}).setdefault(bucket, []).append(route)
    reuse = shells if shells is not None else {}

    def shell(group_id: str, inner: list[dict[str, Any]], build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        before = reuse.get(group_id)
        old = _inner_routes(before) if before is not None else None
        if (
            before is None
            or old is None
            or len(old) != len(inner)
            or any(a is not b for a, b in zip(old, inner, strict=True))
        ):
            before = reuse[group_id] = build()
        return before

    grouped = [host_case_route(make_id)]
    for b in sorted(exact):
        group_id = make_id(GROUP_KIND, "exact", str(b))
        grouped.append(shell(group_id, exact[b], functools.partial(_exact_shell, group_id, exact[b])))
    for depth in sorted(wildcard, reverse=True):
        buckets = wildcard[depth]
        for b in sorted(buckets):
            group_id = make_id(GROUP_KIND, f"wildcard-{depth}", str(b))
            build = functools.partial(_wildcard_shell, group_id, depth, buckets[b])
            grouped.append(shell(group_id, buckets[b], build))
    grouped += routes[count:]
    if wildcard:
        grouped.append(host_names_route(make_id, hosts[exact_count:]))
    return grouped


def _inner_routes(shell: Mapping[str, Any]) -> list[Any] | None:
    handle = shell.get("handle")
    if isinstance(handle, list) and len(handle) == 1 and isinstance(handle[0], dict):
        inner = handle[0].get("routes")
        if handle[0].get("handler") == "subroute" and isinstance(inner, list):
            return inner
    return None


def _expected_shell(shell: Mapping[str, Any], inner: list[Any]) -> dict[str, Any] | None:
    """What `group_routes` writes for these inner routes under this shell's @id (None: it would write none)."""
    hosts = [_single_host(r) for r in inner]
    if not inner or any(h is None for h in hosts):
        return None
    group_id = str(shell.get("@id"))
    wild = {str(h).startswith("*.") for h in hosts}
    depths = {_depth(str(h)) for h in hosts}
    if wild == {False}:
        return _exact_shell(group_id, inner)
    if wild == {True} and len(depths) == 1:
        return _wildcard_shell(group_id, depths.pop(), inner)
    return None


def _derived_shell(shell: dict[str, Any], inner: list[Any], memo: Any) -> tuple[bool, bool]:
    """Is `shell` exactly what `group_routes` writes for its inner routes, and is it a wildcard group?"""
    if memo is not None:
        seen, result = memo.get("group", shell)
        if seen:
            return result  # type: ignore[no-any-return]
    expected = _expected_shell(shell, inner)
    result = (shell == expected, expected is not None and "vars" in expected["match"][0])
    return memo.put("group", shell, result) if memo is not None else result


def ungroup(routes: Sequence[Any], id_prefix: str, memo: Any = None) -> list[Any]:
    """The routes with every group replaced by its inner routes, in order (groups and the route naming the
    wildcards are recognised by `@id`: `<id_prefix>group.…`, `<id_prefix>host-names`).

    An outer route that is exactly what `group_routes` writes for its inner routes is fully derived from
    them and is dropped, so a plan compares the inner routes only; so is the route naming the wildcards
    when it names exactly the grouped wildcards. One that is not (changed in the live config) stays, in
    front of its inner routes which are replaced by `@ref`s, so the change shows.

    `memo` (targets/caddy_memory.ResourceMemo) remembers the check of an outer route by its identity."""
    flat: list[Any] = []
    wildcards: list[str] = []
    names_ids = (f"{id_prefix}{HOST_NAMES_KIND}", f"{id_prefix}{HOST_NAMES_KIND}.http")
    names_seen = False
    for route in routes:
        route_id = str(route.get("@id", "")) if isinstance(route, dict) else ""
        if route_id in names_ids:
            names_seen = True
            if route != host_names_route(lambda *_, same=route_id: same, wildcards):
                flat.append(route)
            continue
        inner = _inner_routes(route) if route_id.startswith(f"{id_prefix}{GROUP_KIND}.") else None
        if inner is None:
            flat.append(route)
            continue
        derived, wild = _derived_shell(route, inner, memo)
        if not derived:
            refs = [{"@ref": r.get("@id")} if isinstance(r, dict) else r for r in inner]
            flat.append({**route, "handle": [{**route["handle"][0], "routes": refs}]})
        elif wild:
            wildcards += [str(_single_host(r)) for r in inner]
        flat.extend(inner)
    if wildcards and not names_seen:  # removed behind the agent's back: their certificates would lapse
        flat.append({"@id": names_ids[0], "absent": True})
    return flat
