"""The conformance scenarios' driver for roomcast.js: every client is a ``Roomcast``
in a Chromium page, made and driven by a small harness (``HARNESS``) that records
what the library reports in the shape roomcast.client's driver records it.

A client lives in a page of its server's origin (the server takes WebSockets from its
own origin only, ``allowed_origins``), one page per server: a small one with no
Content-Security-Policy (the 404 of ``/conformance``), which imports ``/roomcast.js``.
A server killed and restarted on its port is the same origin, so its page goes on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .scenarios import Ack, Observed

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from ...conftest import ServerProcess
    from ..browser import Pages

HARNESS = """async () => {
    const { Roomcast } = await import('/roomcast.js');
    const clients = {};
    const records = {};
    const publish = async (label, room, data) => {
        const record = records[label];
        try {
            const r = await clients[label].room(room).publish(data);
            const ack = [room, r.epoch, r.offset, Boolean(r.duplicate), data];
            record.acks.push(ack);
            return { ack };
        } catch (err) {
            record.errors.push(['publish', err.code]);
            return { error: err.code };
        }
    };
    window.harness = {
        open(label, { url, name, tokens, requestTimeout }) {
            const record = { events: [], states: [], errors: [], acks: [], tokens: 0, busy: 0 };
            records[label] = record;
            const options = { url, name, requestTimeout, minDelay: 50, maxDelay: 300,
                              autoConnect: false };
            if (tokens.length) {
                options.token = () => tokens[Math.min(++record.tokens, tokens.length) - 1];
            }
            const client = new Roomcast(options);
            client.on('state', (s) => record.states.push([s.state, s.code ?? null]));
            clients[label] = client;
            client.connect();
        },
        state: (label) => clients[label].state,
        inFlight: (label) => clients[label]._pending.size,
        async subscribe(label, room) {
            const record = records[label];
            const events = record.events;
            const r = clients[label].room(room);
            r.on('message', (e) => events.push(['message', room, e.epoch, e.offset, e.data]));
            r.on('reset', (n) => events.push(['gap', room, n.epoch, n.offset, 'server']));
            r.on('subscribed', (s) => {
                if (s.since === null) return;  // the first subscribe: nothing to resume
                events.push(s.recovered ? ['recovered', room]
                                        : ['gap', room, s.epoch, s.offset, 'not_recovered']);
            });
            r.on('error', (err) => record.errors.push(['resubscribe', err.code]));
            try {
                await r.subscribe();
                return null;
            } catch (err) {
                record.errors.push(['subscribe', err.code]);
                return err.code;
            }
        },
        publish,
        pump(label, room, count, pause) {
            const record = records[label];
            record.busy += 1;
            (async () => {
                for (let n = 0; n < count; n++) {
                    await publish(label, room, [label, n]);
                    await new Promise((resolve) => setTimeout(resolve, pause));
                }
                record.busy -= 1;
            })();
        },
        observed: (label) => records[label],
        close() {
            for (const client of Object.values(clients)) client.close();
        },
    };
}"""


class JsDriver:
    kind = "js"

    def __init__(self, pages: Pages) -> None:
        self._pages = pages
        self._by_origin: dict[str, Page] = {}
        self._by_label: dict[str, Page] = {}

    @property
    def page_errors(self) -> list[str]:
        """Uncaught exceptions in the page's scripts."""
        return self._pages.errors

    def page(self, label: str) -> Page:
        """The page of client ``label``."""
        return self._by_label[label]

    def open(
        self,
        label: str,
        server: ServerProcess,
        *,
        name: str | None = None,
        tokens: Sequence[str] = (),
        request_timeout: float = 10.0,
    ) -> None:
        page = self._by_origin.get(server.http)
        if page is None:
            page = self._pages.open(f"{server.http}/conformance", f"conformance-{server.port}")
            page.evaluate(HARNESS)
            self._by_origin[server.http] = page
        self._by_label[label] = page
        options = {
            "url": server.ws,
            "name": name,
            "tokens": list(tokens),
            "requestTimeout": int(request_timeout * 1000),
        }
        page.evaluate("([label, options]) => harness.open(label, options)", [label, options])
        try:
            page.wait_for_function(
                "(label) => ['connected', 'resumed'].includes(harness.state(label))", arg=label
            )
        except Exception as exc:
            raise AssertionError(f"js/{label}: not connected: {self.observed(label)}") from exc

    def subscribe(self, label: str, room: str) -> str | None:
        code: str | None = self.page(label).evaluate(
            "([label, room]) => harness.subscribe(label, room)", [label, room]
        )
        return code

    def publish(self, label: str, room: str, data: Any) -> Ack | str:
        outcome = self.page(label).evaluate(
            "([label, room, data]) => harness.publish(label, room, data)", [label, room, data]
        )
        if "error" in outcome:
            return str(outcome["error"])
        return Ack(*outcome["ack"])

    def pump(self, label: str, room: str, count: int, pause: float = 0.02) -> None:
        self.page(label).evaluate(
            "([label, room, count, pause]) => harness.pump(label, room, count, pause)",
            [label, room, count, int(pause * 1000)],
        )

    def in_flight(self, label: str) -> int:
        return int(self.page(label).evaluate("(label) => harness.inFlight(label)", label))

    def observed(self, label: str) -> Observed:
        return Observed.of(self.page(label).evaluate("(label) => harness.observed(label)", label))

    def close(self) -> None:
        for page in self._by_origin.values():
            if not page.is_closed():
                page.evaluate("() => harness.close()")
