"""Malformed spec repositories: a valid base, and cases that each break it one way.

Every case is a set of files laid over the base repository (None deletes a
file). `malformed_expected.json` holds, per case, the exact problem lines the
agent must report (`file:line:col: Kind/name: field: message`); regenerate it
with `UPDATE_GOLDEN=1 pytest tests/reliability/test_malformed_specs.py` and
review the diff: the messages are part of the product.
"""

from __future__ import annotations

BASE: dict[str, str] = {
    "config.yaml": """global:
  certificates: {provider: internal}
  authentik:
    outpostUrl: http://127.0.0.1:9
""",
    "routes/app.yaml": """apiVersion: hecate.io/v1
kind: Route
metadata:
  name: app
spec:
  domain: app.example.com
  upstreams:
    - dial: 127.0.0.1:9101
  tls: {autoHTTPS: false, forceHTTPS: false}
""",
    "policies/staff.yaml": """apiVersion: hecate.io/v1
kind: AuthPolicy
metadata:
  name: staff
spec:
  provider: authentik
  flow: default-authentication-flow
  requirements:
    groups: [staff]
""",
    "streams/db.yaml": """apiVersion: hecate.io/v1
kind: Stream
metadata:
  name: db
spec:
  protocol: tcp
  listen: {address: 127.0.0.1, port: STREAM_PORT}
  upstreams:
    - server: 127.0.0.1:9201
""",
}


def route(body: str, name: str = "bad") -> str:
    """A route document whose spec is `body` (indented by the caller, two spaces)."""
    return f"""apiVersion: hecate.io/v1
kind: Route
metadata:
  name: {name}
spec:
{body}"""


def minimal_route(extra: str = "", *, domain: str = "bad.example.com", upstream: str = "127.0.0.1:9102") -> str:
    return route(f"  domain: {domain}\n  upstreams:\n    - dial: {upstream}\n{extra}")


def stream(body: str, name: str = "bad") -> str:
    return f"""apiVersion: hecate.io/v1
kind: Stream
metadata:
  name: {name}
spec:
{body}"""


def minimal_stream(extra: str = "", *, listen: str = "{address: 127.0.0.1, port: 25999}",
                   server: str = "127.0.0.1:9202", protocol: str = "tcp") -> str:
    return stream(f"  protocol: {protocol}\n  listen: {listen}\n  upstreams:\n    - server: {server}\n{extra}")


def policy(body: str, name: str = "bad") -> str:
    body = body.replace("  provider: authentik\n", "  provider: authentik\n  flow: login\n", 1)
    return f"""apiVersion: hecate.io/v1
kind: AuthPolicy
metadata:
  name: {name}
spec:
{body}"""


R = "routes/bad.yaml"
S = "streams/bad.yaml"
P = "policies/bad.yaml"
C = "config.yaml"

CASES: dict[str, dict[str, str | bytes | None]] = {
    # --- YAML syntax ---------------------------------------------------------------------------
    "syntax-unclosed-quote": {R: minimal_route(domain='"bad.example.com')},
    "syntax-bad-indentation": {R: "apiVersion: hecate.io/v1\nkind: Route\nmetadata:\n  name: bad\n spec: {}\n"},
    "syntax-tab-indentation": {R: "apiVersion: hecate.io/v1\nkind: Route\nmetadata:\n\tname: bad\n"},
    "syntax-duplicate-key": {R: minimal_route("  domain: other.example.com\n")},
    "syntax-unclosed-flow-mapping": {R: minimal_route("  tls: {autoHTTPS: false\n")},
    "syntax-unclosed-flow-sequence": {R: route("  domain: bad.example.com\n  upstreams: [{dial: '127.0.0.1:1'}\n")},
    "syntax-invalid-escape": {R: minimal_route(domain='"bad\\qexample.com"')},
    "syntax-mapping-in-scalar": {R: minimal_route(domain="bad: example.com")},
    "syntax-stray-document-end": {R: "apiVersion: hecate.io/v1\n...\nkind: Route\n"},
    "syntax-directive-garbage": {R: "%YAML 9.9\n---\napiVersion: hecate.io/v1\n"},
    "syntax-unknown-tag": {R: minimal_route("  middleware: !!python/object:os.system [ls]\n")},
    "syntax-custom-tag": {R: minimal_route(domain="!env DOMAIN")},
    # --- encodings -----------------------------------------------------------------------------
    "encoding-invalid-utf8": {R: minimal_route(domain="bad.example.com").encode().replace(b"bad.example", b"b\xffd.example")},
    "encoding-nul-byte": {R: minimal_route().encode().replace(b"kind", b"ki\x00nd")},
    "encoding-utf16": {R: minimal_route().encode("utf-16")},
    "encoding-latin1-domain": {R: minimal_route(domain="caf\u00e9.example.com").encode("latin-1")},
    "encoding-control-character": {R: minimal_route(domain="bad\x07.example.com")},
    "encoding-bidi-override-in-name": {R: minimal_route().replace("name: bad", "name: ba\u202ed")},
    # --- document structure ---------------------------------------------------------------------
    "structure-missing-api-version": {R: minimal_route().replace("apiVersion: hecate.io/v1\n", "")},
    "structure-wrong-api-version": {R: minimal_route().replace("hecate.io/v1", "hecate.io/v2")},
    "structure-unknown-kind": {R: minimal_route().replace("kind: Route", "kind: Router")},
    "structure-missing-kind": {R: minimal_route().replace("kind: Route\n", "")},
    "structure-missing-metadata": {R: minimal_route().replace("metadata:\n  name: bad\n", "")},
    "structure-missing-name": {R: minimal_route().replace("  name: bad\n", "  labels: {a: b}\n")},
    "structure-missing-spec": {R: "apiVersion: hecate.io/v1\nkind: Route\nmetadata:\n  name: bad\n"},
    "structure-spec-is-list": {R: "apiVersion: hecate.io/v1\nkind: Route\nmetadata:\n  name: bad\nspec: [1, 2]\n"},
    "structure-document-is-list": {R: "- apiVersion: hecate.io/v1\n- kind: Route\n"},
    "structure-document-is-scalar": {R: "just some text\n"},
    "structure-unknown-top-level-field": {R: minimal_route() + "status: {}\n"},
    "structure-unknown-spec-field": {R: minimal_route("  upstream: 127.0.0.1:1\n")},
    "structure-unknown-metadata-field": {R: minimal_route().replace("  name: bad\n", "  name: bad\n  namespace: x\n")},
    "structure-second-document-bad": {R: minimal_route() + "---\n" + minimal_route(domain="two.example.com").replace("name: bad", "name: two").replace("kind: Route", "kind: Nope")},
    "structure-config-unknown-key": {C: BASE[C] + "  logging: {level: debug}\n"},
    "structure-config-not-global": {C: "settings:\n  dns: {}\n"},
    # --- types ---------------------------------------------------------------------------------
    "type-name-integer": {R: minimal_route().replace("name: bad", "name: 42")},
    "type-domain-list": {R: minimal_route(domain="[a.example.com]")},
    "type-upstreams-mapping": {R: route("  domain: bad.example.com\n  upstreams: {dial: '127.0.0.1:1'}\n")},
    "type-upstreams-empty": {R: route("  domain: bad.example.com\n  upstreams: []\n")},
    "type-weight-string": {R: route("  domain: bad.example.com\n  upstreams:\n    - {dial: '127.0.0.1:1', weight: heavy}\n")},
    "type-weight-float": {R: route("  domain: bad.example.com\n  upstreams:\n    - {dial: '127.0.0.1:1', weight: 1.5}\n")},
    "type-auto-https-string": {R: minimal_route("  tls: {autoHTTPS: 'yes'}\n")},
    "type-tls-list": {R: minimal_route("  tls: [1.3]\n")},
    "type-header-value-list": {R: minimal_route("  headers:\n    set: {X-A: [1, 2]}\n")},
    "type-header-remove-string": {R: minimal_route("  headers:\n    remove: Server\n")},
    "type-middleware-number": {R: minimal_route("  middleware: [42]\n")},
    "type-labels-nested": {R: minimal_route().replace("  name: bad\n", "  name: bad\n  labels: {team: {a: b}}\n")},
    "type-stream-port-string": {S: minimal_stream(listen="{address: 127.0.0.1, port: http}")},
    "type-stream-backup-string": {S: minimal_stream().replace("- server: 127.0.0.1:9202", "- {server: '127.0.0.1:9202', backup: maybe}")},
    "type-policy-groups-string": {P: policy("  provider: authentik\n  requirements:\n    groups: staff\n")},
    "type-mfa-string": {P: policy("  provider: authentik\n  requirements:\n    groups: [a]\n    mfa: sometimes\n")},
    "type-config-resolvers-string": {C: BASE[C] + "  dns: {resolvers: 1.1.1.1}\n"},
    # --- ranges and formats ---------------------------------------------------------------------
    "range-weight-zero": {R: route("  domain: bad.example.com\n  upstreams:\n    - {dial: '127.0.0.1:1', weight: 0}\n")},
    "range-weight-too-big": {R: route("  domain: bad.example.com\n  upstreams:\n    - {dial: '127.0.0.1:1', weight: 101}\n")},
    "range-dial-port-zero": {R: minimal_route(upstream="127.0.0.1:0")},
    "range-dial-port-too-big": {R: minimal_route(upstream="127.0.0.1:65536")},
    "range-dial-no-port": {R: minimal_route(upstream="127.0.0.1")},
    "range-dial-ipv6-no-brackets": {R: minimal_route(upstream="'2001:db8::1:80'")},
    "range-name-uppercase": {R: minimal_route().replace("name: bad", "name: Bad")},
    "range-name-too-long": {R: minimal_route().replace("name: bad", "name: " + "a" * 64)},
    "range-name-underscore": {R: minimal_route().replace("name: bad", "name: bad_name")},
    "range-domain-space": {R: minimal_route(domain="'bad example.com'")},
    "range-domain-double-wildcard": {R: minimal_route(domain="'*.*.example.com'")},
    "range-domain-label-too-long": {R: minimal_route(domain="a" * 64 + ".example.com")},
    "range-tls-1-1": {R: minimal_route("  tls: {minVersion: '1.1'}\n")},
    "range-tls-1-0": {R: minimal_route("  tls: {minVersion: '1.0'}\n")},
    "range-canary-percentage": {R: minimal_route("  canary: {upstream: '127.0.0.1:9', percentage: 101}\n")},
    "range-canary-negative": {R: minimal_route("  canary: {upstream: '127.0.0.1:9', percentage: -1}\n")},
    "range-health-interval-bad-unit": {R: minimal_route("  healthCheck: {path: /h, interval: 10 parsecs}\n")},
    "range-health-timeout-above-interval": {R: minimal_route("  healthCheck: {path: /h, interval: 5s, timeout: 10s}\n")},
    "range-health-threshold-zero": {R: minimal_route("  healthCheck: {path: /h, unhealthyThreshold: 0}\n")},
    "range-health-path-relative": {R: minimal_route("  healthCheck: {path: health}\n")},
    "range-rate-limit-malformed": {R: minimal_route("  middleware: ['rate-limit:many/minute']\n")},
    "range-rate-limit-unit": {R: minimal_route("  middleware: ['rate-limit:10/fortnight']\n")},
    "range-unknown-middleware": {R: minimal_route("  middleware: [gzip]\n")},
    "range-stream-port-zero": {S: minimal_stream(listen="{address: 127.0.0.1, port: 0}")},
    "range-stream-port-too-big": {S: minimal_stream(listen="{address: 127.0.0.1, port: 70000}")},
    "range-stream-protocol": {S: minimal_stream(protocol="sctp")},
    "range-stream-address-host-name": {S: minimal_stream(listen="{address: db.local, port: 25999}")},
    "range-stream-max-fails-negative": {S: minimal_stream().replace("- server: 127.0.0.1:9202", "- {server: '127.0.0.1:9202', maxFails: -1}")},
    "range-stream-unknown-preset": {S: stream("  preset: postfix\n  upstreams:\n    - server: 127.0.0.1:25\n")},
    "range-session-duration": {P: policy("  provider: authentik\n  requirements:\n    groups: [a]\n    sessionDuration: forever\n")},
    "range-policy-provider": {P: policy("  provider: keycloak\n  requirements:\n    groups: [a]\n")},
    "range-policy-method": {P: policy("  provider: authentik\n  requirements:\n    groups: [a]\n  allowedHttpMethods: [FETCH]\n")},
    "range-config-tls-floor": {C: BASE[C] + "  security: {tlsMinVersion: '1.0'}\n"},
    "range-config-provider": {C: BASE[C].replace("provider: internal", "provider: zerossl")},
    "range-config-renewal-window": {C: BASE[C].replace("provider: internal", "provider: internal, renewalWindow: soon")},
    # --- references ----------------------------------------------------------------------------
    "reference-missing-policy": {R: minimal_route("  authPolicy: nobody\n")},
    # (A route with a policy and no outpost URL in config.yaml is valid now: a node's agent.yaml may supply it.)
    "reference-dns-token-literal": {C: BASE[C] + "  dns: {provider: hetzner, apiToken: hunter2-literal-token}\n"},
    "reference-env-malformed": {C: BASE[C].replace("http://127.0.0.1:9", "${OUTPOST-URL}")},
    "reference-vault-dotdot": {R: minimal_route("  headers:\n    upstream:\n      set: {X-Key: '${vault:apps/../root#k}'}\n")},
    "reference-vault-missing-key": {R: minimal_route("  headers:\n    upstream:\n      set: {X-Key: '${vault:apps/app}'}\n")},
    "reference-dollar-unescaped-in-config": {C: BASE[C].replace("{provider: internal}", "{provider: letsencrypt, email: 'a${b@example.com'}")},
    # --- conflicts -----------------------------------------------------------------------------
    "conflict-duplicate-route-name": {R: minimal_route().replace("name: bad", "name: app")},
    "conflict-duplicate-domain": {R: minimal_route(domain="app.example.com")},
    "conflict-duplicate-domain-case": {R: minimal_route(domain="APP.Example.com")},
    "conflict-duplicate-policy-name": {P: policy("  provider: authentik\n  requirements:\n    groups: [x]\n", name="staff")},
    "conflict-duplicate-stream-name": {S: minimal_stream().replace("name: bad", "name: db")},
    "conflict-stream-same-port": {S: minimal_stream(listen="{address: 127.0.0.1, port: STREAM_PORT}")},
    "conflict-two-config-files": {"config.yml": BASE[C]},
    # --- values the proxies refuse or read otherwise, and values that used to crash the agent -------
    "huge-integer-decimal": {R: minimal_route("  canary: {upstream: '127.0.0.1:9103', percentage: " + "9" * 5000 + "}\n")},
    "huge-integer-hex-port": {S: minimal_stream(listen="{address: 127.0.0.1, port: 0x" + "f" * 5000 + "}")},
    "huge-integer-key": {R: minimal_route("  ? " + "1" * 5000 + "\n  : x\n")},
    "outpost-url-port-out-of-range": {C: BASE[C].replace("http://127.0.0.1:9", "http://127.0.0.1:99999")},
    "outpost-url-port-not-a-number": {C: BASE[C].replace("http://127.0.0.1:9", "http://127.0.0.1:x")},
    "outpost-url-broken-ipv6": {C: BASE[C].replace("http://127.0.0.1:9", "'http://[::1/'")},
    "health-path-control-character": {R: minimal_route('  healthCheck: {path: "/health\\x01"}\n')},
    "health-path-bad-escape": {R: minimal_route("  healthCheck: {path: '/health%zz'}\n")},
    "duration-beyond-go": {R: minimal_route("  healthCheck: {path: /h, interval: 110000d}\n")},
    "duration-probe-over-a-day": {S: minimal_stream("  healthCheck: {interval: 2d}\n")},
    "fail-timeout-milliseconds": {S: minimal_stream("      failTimeout: 500ms\n")},
    "domain-idna2008-invalid": {R: minimal_route(domain='"a\\u200db.example.com"')},
    "text-control-characters-in-name": {R: minimal_route().replace("name: bad", 'name: "bad\\e[31m\\0"')},
    "text-line-break-in-field-name": {R: minimal_route('  headers:\n    set: {"X-A\\r\\nroutes/app.yaml:1:1: forged": b}\n')},
    # --- sizes and aliases ----------------------------------------------------------------------
    "size-file-too-large": {R: minimal_route() + "# " + "x" * (1024 * 1024 + 10) + "\n"},
    "size-header-value-too-long": {R: minimal_route("  headers:\n    set: {X-Long: " + "v" * 5000 + "}\n")},
    "size-too-many-upstreams": {R: route("  domain: bad.example.com\n  upstreams:\n" + "".join(f"    - dial: 127.0.0.1:{2000 + i}\n" for i in range(101)))},
    "alias-billion-laughs": {R: "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"},
    "alias-undefined-anchor": {R: minimal_route("  headers: *nowhere\n")},
    "alias-merge-key": {R: "base: &base {domain: x.example.com}\n" + minimal_route("  <<: *base\n")},
    # --- injection attempts -----------------------------------------------------------------------
    "inject-header-crlf": {R: minimal_route('  headers:\n    set: {X-A: "ok\\r\\nSet-Cookie: evil=1"}\n')},
    "inject-caddy-placeholder-header": {R: minimal_route("  headers:\n    set: {X-Leak: '{env.VAULT_TOKEN}'}\n")},
    "inject-caddy-placeholder-upstream-header": {R: minimal_route("  headers:\n    upstream:\n      set: {X-Leak: '{http.request.header.Cookie}'}\n")},
    "inject-caddy-placeholder-health-path": {R: minimal_route("  healthCheck: {path: '/h{env.HOME}'}\n")},
    "inject-header-name-space": {R: minimal_route("  headers:\n    set: {'X A': b}\n")},
    "inject-header-name-colon": {R: minimal_route("  headers:\n    set: {'X-A: b\\r\\nX-B': c}\n")},
    "inject-nginx-directive-in-server": {S: minimal_stream(server="'127.0.0.1:9202; include /etc/passwd'")},
    "inject-nginx-brace-in-server": {S: minimal_stream(server="'127.0.0.1:9202 } server { listen 1'")},
    "inject-nginx-listen-address": {S: minimal_stream(listen="{address: '127.0.0.1 reuseport', port: 25999}")},
    "inject-domain-newline": {R: minimal_route(domain='"bad.example.com\\nHost: evil"')},
    "inject-domain-path": {R: minimal_route(domain="bad.example.com/admin")},
    "inject-dial-path": {R: minimal_route(upstream="127.0.0.1:80/evil")},
    "inject-dial-scheme": {R: minimal_route(upstream="'http://127.0.0.1:80'")},
    "inject-label-key": {R: minimal_route().replace("  name: bad\n", "  name: bad\n  labels: {'a b': c}\n")},
    "inject-outpost-url-scheme": {C: BASE[C].replace("http://127.0.0.1:9", "file:///etc/passwd")},
    "inject-flow-name": {P: policy("  provider: authentik\n  requirements:\n    groups: [a]\n").replace("flow: login", "flow: '../../admin'")},
    "inject-group-name-newline": {P: policy('  provider: authentik\n  requirements:\n    groups: ["a\\nb"]\n')},
}
