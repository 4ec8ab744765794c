"""The AsyncAPI document as one HTML page (``/asyncapi``), for people.

Rendered here from the same document ``/asyncapi.json`` serves, so the two
cannot disagree: every request with its reply, every event, the SSE channels,
the error and close codes, and every schema as a table of fields with the
examples. No script, no outside asset: a plain page with its own small style,
readable without a network and under a strict Content-Security-Policy.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

__all__ = ["render_page"]

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:64rem;padding:1rem 1.5rem;
color:#1d232a;background:#fff}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dde3ea;padding-bottom:.2rem;margin-top:2.5rem}
h3{margin:1.8rem 0 .3rem}code,pre{font:13px/1.4 ui-monospace,monospace}h3 code{font-size:1em}
pre{background:#f4f6f8;padding:.6rem .8rem;white-space:pre-wrap;word-break:break-all;
border-radius:4px}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{text-align:left;vertical-align:top;border-bottom:1px solid #e6eaee;padding:.25rem .5rem}
th{background:#f4f6f8;font-weight:600}.muted{color:#5b6670}nav a{margin-right:1rem}
.tag{display:inline-block;font-size:12px;padding:0 .4rem;border-radius:3px;background:#e8eef6}
@media (prefers-color-scheme:dark){body{background:#14181c;color:#dde3ea}
pre,th{background:#1f252b}th,td{border-color:#2a3138}.tag{background:#25303b}
a{color:#8cb8ff}.muted{color:#98a4ae}}
"""


def _schema_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type_of(schema: dict[str, Any]) -> str:
    """A short, linked description of a schema's type (HTML)."""
    if "$ref" in schema:
        name = _schema_name(schema["$ref"])
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    if "const" in schema:
        return f"<code>{escape(json.dumps(schema['const']))}</code>"
    if "enum" in schema:
        return " | ".join(f"<code>{escape(json.dumps(v))}</code>" for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema and all("const" not in s for s in schema[key]):
            return " | ".join(_type_of(s) for s in schema[key])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    if kind is None:
        return "any JSON value"
    return escape(str(kind))


_LIMITS = ("minLength", "maxLength", "minimum", "maximum", "pattern", "default")


def _limits(schema: dict[str, Any]) -> str:
    parts = [f"{key} {json.dumps(schema[key])}" for key in _LIMITS if key in schema]
    for option in schema.get("anyOf", []):
        parts += [f"{key} {json.dumps(option[key])}" for key in _LIMITS if key in option]
    return escape(", ".join(parts))


def _fields(schema: dict[str, Any]) -> str:
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        return f"<p>{_type_of(schema)}</p>"
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code>{'' if name in required else '?'}</td>"
        f"<td>{_type_of(prop)}</td><td>{escape(prop.get('description', ''))}"
        f"<span class=muted> {_limits(prop)}</span></td></tr>"
        for name, prop in props.items()
    )
    return f"<table><tr><th>field</th><th>type</th><th>meaning</th></tr>{rows}</table>"


def _examples(message: dict[str, Any]) -> str:
    out = []
    for example in message.get("examples", []):
        headers = example.get("headers")
        text = json.dumps(example["payload"], separators=(",", ":"))
        if headers:
            lines = [f"event: {headers['event']}"]
            if "id" in headers:
                lines.append(f"id: {headers['id']}")
            text = "\n".join([*lines, f"data: {text}"])
        out.append(f"<pre>{escape(text)}</pre>")
    return "".join(out)


def _message(doc: dict[str, Any], name: str, heading: str) -> str:
    message = doc["components"]["messages"][name]
    schema = doc["components"]["schemas"][_schema_name(message["payload"]["$ref"])]
    summary = escape(message.get("summary", ""))
    fields = _fields(schema)
    result = schema.get("properties", {}).get("result", {}).get("$ref")
    if result is not None:  # a reply: its result is what matters
        fields += f"<p><code>result</code>:</p>{_fields(_resolve(doc, result))}"
    return (
        f'<h3 id="message-{escape(name)}">{heading}</h3><p>{summary}</p>'
        f"{fields}{_examples(message)}"
    )


def _resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["components"]["schemas"][_schema_name(ref)]
    return schema


def _requests(doc: dict[str, Any]) -> str:
    out = ["<h2 id=requests>Requests and replies (WebSocket)</h2>"]
    for op in doc["operations"].values():
        if op["action"] != "receive":
            continue
        request = _schema_name(op["messages"][0]["$ref"])
        reply = _schema_name(op["reply"]["messages"][0]["$ref"])
        out.append(_message(doc, request, f"<code>{escape(request)}</code>"))
        out.append(_message(doc, reply, f"<code>{escape(request)}</code> → reply"))
    out.append(_message(doc, "errorReply", "Any request → error reply"))
    return "".join(out)


def _events(doc: dict[str, Any]) -> str:
    out = ["<h2 id=events>Events (WebSocket)</h2>"]
    for ref in doc["operations"]["sendEvents"]["messages"]:
        name = _schema_name(ref["$ref"])
        kind = name.removesuffix("Event")
        out.append(_message(doc, name, f"<code>{escape(kind)}</code>"))
    return "".join(out)


def _sse(doc: dict[str, Any]) -> str:
    out = ["<h2 id=sse>Server-Sent Events</h2>"]
    for key in ("roomEvents", "events"):
        channel = doc["channels"][key]
        op = next(o for o in doc["operations"].values() if o["channel"]["$ref"].endswith(key))
        query = op["bindings"]["http"]["query"]
        out.append(
            f"<h3>GET <code>{escape(channel['address'])}</code></h3>"
            f"<p>{escape(channel.get('description', ''))}</p><p>Query:</p>{_fields(query)}"
        )
    out.append("<p>Each stream carries these events:</p>")
    refs = doc["operations"]["sseRoomEvents"]["messages"]
    for ref in refs:
        name = _schema_name(ref["$ref"])
        message = doc["components"]["messages"][name]
        out.append(_message(doc, name, f"<code>{escape(message['title'])}</code>"))
    return "".join(out)


def _codes(doc: dict[str, Any]) -> str:
    schemas = doc["components"]["schemas"]
    errors = "".join(
        f"<tr><td><code>{escape(c['const'])}</code></td><td>{escape(c['description'])}</td></tr>"
        for c in schemas["ErrorCode"]["oneOf"]
    )
    closes = "".join(
        f"<tr><td>{c['const']}</td><td>{escape(c['title'])}</td>"
        f"<td>{escape(c['description'])}</td></tr>"
        for c in schemas["CloseCode"]["oneOf"]
    )
    return (
        f"<h2 id=errors>Error codes</h2><p>{escape(schemas['ErrorCode']['description'])}</p>"
        f"<table><tr><th>code</th><th>when</th></tr>{errors}</table>"
        f"<h2 id=close>Close codes</h2><p>{escape(schemas['CloseCode']['description'])}</p>"
        f"<table><tr><th>code</th><th>name</th><th>reason; what a client does</th></tr>"
        f"{closes}</table>"
    )


def _security(doc: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{escape(s['type'])} "
        f"{escape(s.get('scheme', s.get('in', '')))} {escape(s.get('name', ''))}</td>"
        f"<td>{escape(s.get('description', ''))}</td></tr>"
        for name, s in doc["components"]["securitySchemes"].items()
    )
    return (
        "<h2 id=auth>Authentication</h2>"
        f"<table><tr><th>scheme</th><th>how</th><th></th></tr>{rows}</table>"
    )


def _schemas(doc: dict[str, Any]) -> str:
    out = ["<h2 id=schemas>Schemas</h2>"]
    for name, schema in sorted(doc["components"]["schemas"].items()):
        if name in ("ErrorCode", "CloseCode"):
            body = '<p>See <a href="#errors">error codes</a> and <a href="#close">close codes</a>.'
        else:
            body = _fields(schema)
        out.append(f'<h3 id="schema-{escape(name)}"><code>{escape(name)}</code></h3>{body}')
    return "".join(out)


def _servers(doc: dict[str, Any]) -> str:
    rows = []
    for key, channel in doc["channels"].items():
        server = doc["servers"][_schema_name(channel["servers"][0]["$ref"])]
        url = f"{server['protocol']}://{server['host']}{server.get('pathname', '')}"
        rows.append(
            f"<tr><td><code>{escape(url + channel['address'])}</code></td>"
            f"<td>{escape(channel.get('title', key))}</td></tr>"
        )
    return f"<table><tr><th>address</th><th>channel</th></tr>{''.join(rows)}</table>"


def render_page(doc: dict[str, Any], rest_docs: str | None = None) -> str:
    """The whole page for ``doc`` (an AsyncAPI document of protocol/asyncapi.py);
    ``rest_docs`` is where the application's OpenAPI page is, if it has one."""
    rest = f' · <a href="{escape(rest_docs)}">REST (OpenAPI)</a>' if rest_docs else ""
    info = doc["info"]
    title = escape(info["title"])
    nav = "".join(
        f'<a href="#{anchor}">{label}</a>'
        for anchor, label in (
            ("requests", "Requests"),
            ("events", "Events"),
            ("sse", "SSE"),
            ("errors", "Errors"),
            ("close", "Close codes"),
            ("auth", "Authentication"),
            ("schemas", "Schemas"),
        )
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{title}</h1><p class=muted>AsyncAPI {escape(doc['asyncapi'])} · server "
        f'{escape(info["version"])} · <a href="asyncapi.json">asyncapi.json</a> '
        f"<span class=tag>machine-readable</span>{rest}</p>"
        f"<p>{escape(info.get('description', ''))}</p>{_servers(doc)}<nav>{nav}</nav>"
        f"{_requests(doc)}{_events(doc)}{_sse(doc)}{_codes(doc)}{_security(doc)}"
        f"{_schemas(doc)}</body></html>"
    )
