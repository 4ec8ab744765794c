// roomcast.js: the browser client of roomcast (protocol version 1).
//
// An ES module with no dependencies. `Roomcast` speaks the WebSocket protocol
// (docs/protocol.md): it reconnects with exponential backoff and full jitter,
// obeys the close-code ranges, resubscribes every room from the last position
// it saw and reports whether the gap was recovered, keeps requests as promises
// with timeouts, and drops nothing twice. Every publish carries an idempotency
// key, and one whose reply a dropped connection took is sent again once
// reconnected (the server answers a repeat with the first one's position).
// `FeedStream` reads the same rooms
// over Server-Sent Events for pages that only listen. Manual: docs/client.md.
//
// Where it connects: by default to the server this module was loaded from,
// next to it. Imported as `/rt/roomcast.js` (roomcast mounted under `/rt` in a
// host app), `Roomcast` opens `ws(s)://<that host>/rt/ws` and `FeedStream`
// reads `/rt/events`, with no option; at the root, `/ws` and `/events`. The
// `url` option overrides either: an absolute ws(s):// (or http(s):// for
// FeedStream) URL, or a path resolved against the page. A copy of this file
// served from somewhere else (a CDN, the host's own static folder) must be
// given `url`.

export const PROTOCOL_VERSION = 1;

// The close codes that say the client itself sent something wrong: reconnecting
// would only repeat it (protocol/codes.py, should_reconnect).
const CLIENT_FAULTS = new Set([1002, 1003, 1007, 1008, 1009]);
export const TOKEN_EXPIRED = 3003;

// A publish's idempotency key: 1-128 printable ASCII characters, no spaces.
const IDEMPOTENCY_KEY = /^[!-~]{1,128}$/;

/** A fresh idempotency key: a random UUID, or 32 random hex digits where
 * `crypto.randomUUID` is missing (a page that is not a secure context). */
export function newIdempotencyKey() {
  const crypto = globalThis.crypto;
  if (typeof crypto?.randomUUID === "function") return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (typeof crypto?.getRandomValues === "function") crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whose idempotency keys the server checks a publish of connection `info` (its
 * connect result) against: its user id, except that every anonymous connection
 * (`anonymous`: no credentials, a new `anon-` id each time) shares one scope. As
 * roomcast.client's `Session.idempotency_scope`. */
function keyScope(info) {
  const anonymous = typeof info.anonymous === "boolean"
    ? info.anonymous
    : info.expires == null && info.user_id.startsWith("anon-"); // a server before the field
  return anonymous ? "\0anon" : info.user_id;
}

/** Whether a client that saw close `code` should reconnect (and resume). */
export function shouldReconnect(code) {
  if (code >= 3000 && code <= 3499) return true;
  if (code >= 3500 && code <= 4999) return false;
  return !CLIENT_FAULTS.has(code);
}

/** The delay before reconnect attempt `attempt` (0, 1, ...): full jitter. */
export function backoffDelay(attempt, minDelay, maxDelay, random = Math.random) {
  const ceiling = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

const STATE_TEXT = {
  idle: "not connected",
  connecting: "connecting…",
  connected: "connected",
  reconnecting: "reconnecting…",
  resumed: "resumed",
  failed: "gave up",
  closed: "closed",
};

/** A connection state (the `state` event of `Roomcast` and `FeedStream`) in words,
 * for a status indicator: "reconnecting… (in 1.2 s)", "gave up: token expired (3003)". */
export function describeState({ state, code, reason, delay }) {
  let text = STATE_TEXT[state] || state;
  if (state === "reconnecting" && delay !== undefined) text += ` (in ${(delay / 1000).toFixed(1)} s)`;
  if (state === "failed") text += `: ${reason || "closed"}${code ? ` (${code})` : ""}`;
  return text;
}

/** A refused request (`code` from the protocol's error table), or one the
 * client gave up on: `timeout`, `disconnected` (sent, but the connection was
 * lost before the reply: it may or may not have taken effect), `closed`
 * (the client was closed or gave up), `queue_full`, or `unsubscribed` (a
 * room's first subscribe, when the server removed the client from the room).
 * A publish's error has its `idempotencyKey` (if it had one), to send it again
 * with the same key. */
export class RoomcastError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "RoomcastError";
    this.code = code;
  }
}

class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  /** Call `fn` for every `type` event; returns a function that stops it. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  _emit(type, value) {
    for (const fn of [...(this._listeners.get(type) || [])]) {
      try {
        fn(value);
      } catch (err) {
        console.error(`roomcast: a '${type}' listener failed`, err);
      }
    }
  }
}

/** A room's place in its stream: the last message seen, deduplicated. */
class Position {
  constructor() {
    this.epoch = null;
    this.offset = 0;
  }

  get since() {
    return this.epoch === null ? null : { epoch: this.epoch, offset: this.offset };
  }

  /** True when `event` is new; it becomes the position. */
  advance(event) {
    if (event.epoch === this.epoch && event.offset <= this.offset) return false;
    this.epoch = event.epoch;
    this.offset = event.offset;
    return true;
  }

  reset(epoch, offset) {
    this.epoch = epoch;
    this.offset = offset;
  }
}

/** `ws` next to this module (`/rt/roomcast.js` -> `ws(s)://host/rt/ws`), or
 * `url` (ws(s)://, or a path resolved against the page). */
function absoluteSocketUrl(url) {
  if (url && /^wss?:/.test(url)) return url;
  const http = url ? new URL(url, location.href) : new URL("ws", import.meta.url);
  http.protocol = http.protocol === "https:" ? "wss:" : "ws:";
  return http.href;
}

/** `events` next to this module (`/rt/roomcast.js` -> `/rt/events`), or `url`
 * resolved against the page. */
function eventsUrl(url) {
  return url ? new URL(url, location.href) : new URL("events", import.meta.url);
}

/** One room of a `Roomcast` client. Events: `message`, `join`, `leave`,
 * `reset`, `subscribed` (the subscribe result, on every (re)subscribe, with
 * `recovered`), `unsubscribed` (`{type, room, reason: "server"}`: the server
 * removed this client from the room, which is then forgotten), `error` (a
 * resubscribe was refused). Get it with `client.room(name)`. */
export class Room extends Emitter {
  constructor(client, name) {
    super();
    this.client = client;
    this.name = name;
    this.position = new Position();
    this.wanted = false; // subscribe on every connection
    this.subscribed = false; // on the current connection
    this._first = null;
    this._settle = null; // the first subscribe's promise, until it settles
  }

  /** Subscribe (and stay subscribed across reconnects). Resolves with the
   * first subscribe result, `{room, epoch, offset, recovered, replayed}`, once
   * connected; rejects if the server refuses (e.g. `forbidden`). */
  subscribe() {
    if (this.wanted) return this._first;
    this.wanted = true;
    this._first = new Promise((resolve, reject) => {
      this._settle = { resolve, reject };
    });
    this.client._resubscribe(this).catch(() => {}); // settled through _first
    return this._first;
  }

  /** Stop receiving; the room is forgotten on reconnects. */
  async unsubscribe() {
    if (!this.wanted) return { room: this.name };
    this.wanted = false;
    this._settle?.reject(new RoomcastError("closed", "unsubscribed"));
    this._settle = null;
    if (!this.subscribed) return { room: this.name };
    this.subscribed = false;
    return this.client.request("unsubscribe", { room: this.name });
  }

  /** Publish `data`; resolves with `{epoch, offset}` (and `duplicate: true` when
   * the server had already published it under its key). Options: `timeout`;
   * `idempotencyKey`, a key of your own, or `false` for none (default: a fresh one,
   * unless the client's `idempotencyKeys` is off); `resend` (default: the client's
   * `resendPublishes`): with a key, send it again on the next connection when a
   * dropped one took its reply. */
  publish(data, options) {
    return this.client._publish(this.name, data, options);
  }

  /** A page of history: `{events, more, epoch, offset}` (oldest first). */
  history({ before = null, limit = 50 } = {}, options) {
    return this.client.request("history", { room: this.name, before, limit }, options);
  }

  /** Who is here: `{room, members: [{conn, user, joined}]}`. */
  presence(options) {
    return this.client.request("presence", { room: this.name }, options);
  }

  _subscribedWith(result, since) {
    if (!result.recovered) this.position.reset(result.epoch, result.offset);
    this._settle?.resolve(result);
    this._settle = null;
    this._emit("subscribed", { ...result, since });
  }

  _refused(err, { quiet = false } = {}) {
    if (!quiet && this.wanted && !this._settle) this._emit("error", err); // a resubscribe was refused
    this.wanted = false;
    this._settle?.reject(err);
    this._settle = null;
    this._first = null;
  }

  /** The server removed this client from the room (the application unsubscribed
   * it): forget the room as `unsubscribe()` does, without asking the server. */
  _removed(notice) {
    this.wanted = false;
    this.subscribed = false;
    this._settle?.reject(new RoomcastError("unsubscribed", `removed from ${this.name} by the server`));
    this._settle = null;
    this._first = null;
    this._emit("unsubscribed", notice);
  }

  _deliver(frame) {
    if (frame.type === "message") {
      if (this.position.advance(frame)) this._emit("message", frame);
      return;
    }
    if (frame.type === "unsubscribed") {
      this._removed(frame);
      return;
    }
    if (frame.type === "reset") this.position.reset(frame.epoch, frame.offset);
    this._emit(frame.type, frame);
  }
}

/**
 * The WebSocket client.
 *
 *   const client = new Roomcast({ name: "ann" });
 *   const room = client.room("chat:lobby");
 *   room.on("message", (event) => show(event));
 *   client.on("state", ({ state }) => indicator(state));
 *   await room.subscribe();
 *   await room.publish({ text: "hi" });
 *
 * States (`client.state`, event `state`): `connecting`, `connected`,
 * `reconnecting`, `resumed` (reconnected and every room recovered its gap),
 * `failed` (gave up: a close code that says "do not reconnect", or
 * `maxRetries` attempts), `closed` (by `close()`).
 *
 * The default `url` is `ws` next to this module: a page that imports
 * `/rt/roomcast.js` connects to `/rt/ws` of the same host.
 */
export class Roomcast extends Emitter {
  constructor(options = {}) {
    super();
    this.options = {
      url: null, // ws(s):// URL of /ws, or a path; default: `ws` next to this module
      token: null, // a string, or a function returning one (or a promise of one)
      name: null, // display name when the server does not use tokens
      minDelay: 500, // ms: backoff base (full jitter)
      maxDelay: 15000, // ms: backoff cap
      maxRetries: Infinity, // reconnect attempts in a row before giving up
      stableAfter: 10000, // ms: a connection up this long resets the attempts
      requestTimeout: 10000, // ms: a request's reply, counted from the call
      queue: true, // requests made while disconnected wait for the connection
      maxQueue: 100, // at most this many waiting; one more is refused
      pingInterval: 20000, // ms of silence before an application ping
      pingTimeout: 10000, // ms for its reply before the connection counts as lost
      idempotencyKeys: true, // every publish gets a fresh key unless it brings its own
      resendPublishes: true, // a keyed publish whose reply was lost is sent again
      WebSocket: globalThis.WebSocket,
      autoConnect: true,
      ...options,
    };
    this.state = "idle";
    this.info = null; // the connect result of the current connection
    this.rooms = new Map();
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> request sent, waiting for its reply
    this._waiting = []; // requests made while not connected
    this._attempt = 0;
    this._everConnected = false;
    this._retryTimer = null;
    this._pingTimer = null;
    this._lastFrame = 0;
    this._upSince = 0;
    this._ready = false; // connect answered: requests go straight out
    this.resent = 0; // publishes sent again after a reconnect (they had a key)
    if (this.options.autoConnect) this.connect();
  }

  /** The `Room` named `name` (one object per name). */
  room(name) {
    if (!this.rooms.has(name)) this.rooms.set(name, new Room(this, name));
    return this.rooms.get(name);
  }

  /** Open the connection (done by the constructor unless `autoConnect: false`). */
  connect() {
    if (this._ws || this.state === "failed") return;
    this._setState(this._everConnected ? "reconnecting" : "connecting");
    this._open();
  }

  /** Close for good: pending and waiting requests are refused with `closed`. */
  close() {
    this._stop("closed", { code: 1000, reason: "closed by the client" });
  }

  /** Send one request; resolves with its `result`, rejects with `RoomcastError`.
   * Never sent again after a dropped connection (use `room.publish` for that). */
  request(op, fields = {}, { timeout = this.options.requestTimeout } = {}) {
    return this._request(op, fields, timeout, false);
  }

  _publish(room, data, options = {}) {
    const { timeout = this.options.requestTimeout, resend = this.options.resendPublishes } = options;
    let key = options.idempotencyKey;
    if (key === undefined || key === null) {
      key = this.options.idempotencyKeys ? newIdempotencyKey() : null;
    } else if (key === false) {
      key = null;
    } else if (typeof key !== "string" || !IDEMPOTENCY_KEY.test(key)) {
      const message = "idempotencyKey: 1-128 printable ASCII characters, no spaces";
      return Promise.reject(new RoomcastError("bad_request", message));
    }
    const fields = key === null ? { room, data } : { room, data, idempotency_key: key };
    return this._request("publish", fields, timeout, key !== null && Boolean(resend));
  }

  /** `resendable`: sent again on the next connection if this one is lost before
   * the reply, provided the next one has the same scope of keys (`sentAs`: the user
   * and scope of the connection it was first sent on). */
  _request(op, fields, timeout, resendable) {
    if (this.state === "closed" || this.state === "failed") {
      return Promise.reject(new RoomcastError("closed", `the client is ${this.state}`));
    }
    return new Promise((resolve, reject) => {
      const request = { op, fields, resolve, reject, timer: null, id: null, resendable, sentAs: null };
      request.timer = setTimeout(() => {
        this._fail(request, "timeout", `no reply to ${op} within ${timeout} ms`);
      }, timeout);
      if (this._ready) {
        this._send(request);
      } else if (!this.options.queue) {
        clearTimeout(request.timer);
        reject(new RoomcastError("disconnected", "not connected"));
      } else if (this._waiting.length >= this.options.maxQueue) {
        clearTimeout(request.timer);
        reject(new RoomcastError("queue_full", "too many requests wait for the connection"));
      } else {
        this._waiting.push(request);
      }
    });
  }

  // -- connection ------------------------------------------------------------

  async _open() {
    let token = this.options.token;
    try {
      if (typeof token === "function") token = await token();
    } catch (err) {
      this._lost({ code: 1006, reason: `no token: ${err}` });
      return;
    }
    if (this.state === "closed" || this.state === "failed") return;
    const ws = new this.options.WebSocket(absoluteSocketUrl(this.options.url));
    this._ws = ws;
    ws.onopen = () => {
      const frame = { op: "connect", id: 0 };
      if (token) frame.token = token;
      if (this.options.name) frame.name = this.options.name;
      ws.send(JSON.stringify(frame));
    };
    ws.onmessage = (message) => this._frame(ws, message.data);
    ws.onclose = (close) => {
      if (this._ws === ws) this._lost({ code: close.code, reason: close.reason });
    };
    ws.onerror = () => {}; // a close event follows, with the code
  }

  _frame(ws, text) {
    if (ws !== this._ws) return;
    this._lastFrame = Date.now();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      console.error("roomcast: a frame that is not JSON", text);
      return;
    }
    if ("type" in frame) {
      const room = this.rooms.get(frame.room);
      if (room?.wanted) room._deliver(frame); // not a room given up (unsubscribed, timed out)
    } else if (frame.id === 0 && !this._ready) {
      this._connected(frame);
    } else {
      const request = this._pending.get(frame.id);
      if (!request) return; // timed out meanwhile
      this._forget(request);
      if (frame.ok) request.resolve(frame.result);
      else request.reject(new RoomcastError(frame.error.code, frame.error.message));
    }
  }

  async _connected(reply) {
    if (!reply.ok) {
      // A refused token closes the connection (the close code says why); any other
      // refusal (e.g. a name the server does not take) would be refused again.
      this.lastError = reply.error;
      this._stop("failed", { code: null, reason: reply.error.message, error: reply.error.code });
      return;
    }
    const resuming = this._everConnected;
    this.info = reply.result;
    this._ready = true;
    this._everConnected = true;
    this._upSince = Date.now();
    this._startPings();
    const rooms = [...this.rooms.values()].filter((room) => room.wanted);
    const waiting = this._waiting.splice(0);
    const results = rooms.map((room) => this._resubscribe(room));
    const user = this.info.user_id;
    const scope = keyScope(this.info);
    for (const request of waiting) {
      if (request.sentAs === null) {
        this._send(request);
      } else if (request.sentAs.scope === scope) {
        this.resent += 1;
        this._send(request);
      } else {
        // The server keeps keys per user: under another user it could not tell a repeat.
        const why =
          "the connection was lost before the reply to this publish, and the new one is " +
          `of another user (${request.sentAs.user} -> ${user}): not sent again`;
        this._fail(request, "disconnected", why);
      }
    }
    const settled = await Promise.allSettled(results);
    if (this._ws === null || !this._ready) return; // lost again meanwhile
    const recovered = settled.every((s) => s.status === "fulfilled" && s.value.recovered);
    const lost = rooms.filter((room, i) => !(settled[i].value || {}).recovered).map((r) => r.name);
    if (resuming && recovered) this._setState("resumed", { rooms: rooms.length });
    else this._setState("connected", { resumed: false, lost });
  }

  /** Subscribe `room` on this connection, from its last position. */
  async _resubscribe(room) {
    if (!this._ready || room.subscribed) return null;
    room.subscribed = true;
    const since = room.position.since;
    const ws = this._ws;
    try {
      const result = await this.request("subscribe", { room: room.name, since });
      room._subscribedWith(result, since);
      return result;
    } catch (err) {
      room.subscribed = false;
      if (err.code === "timeout") this._subscribeLate(room, err, ws);
      else if (err.code !== "disconnected") room._refused(err);
      throw err;
    }
  }

  /** No reply to `room`'s subscribe in time on connection `ws`. A first
   * `subscribe()` rejects with the timeout and the room is given up (and
   * unsubscribed, should the reply still come); a resubscribe's connection is
   * dropped, and the next one subscribes again. */
  _subscribeLate(room, err, ws) {
    if (room._settle) {
      room._refused(err, { quiet: true });
      if (this._ready && this._ws === ws) this.request("unsubscribe", { room: room.name }).catch(() => {});
    } else if (room.wanted && ws && this._ws === ws) {
      this._lost({ code: 1006, reason: `no reply to subscribe ${room.name} in time` });
    }
  }

  _send(request) {
    request.id = this._nextId++;
    this._pending.set(request.id, request);
    this._ws.send(JSON.stringify({ op: request.op, id: request.id, ...request.fields }));
  }

  _forget(request) {
    clearTimeout(request.timer);
    if (request.id !== null) this._pending.delete(request.id);
    const i = this._waiting.indexOf(request);
    if (i >= 0) this._waiting.splice(i, 1);
  }

  /** Settle `request` with a `RoomcastError` of the client's own. */
  _fail(request, code, message) {
    this._forget(request);
    const err = new RoomcastError(code, message);
    if (request.fields.idempotency_key !== undefined) err.idempotencyKey = request.fields.idempotency_key;
    request.reject(err);
  }

  _lost({ code, reason }) {
    const ws = this._ws;
    this._ws = null;
    this._ready = false;
    this._stopPings();
    if (ws && ws.readyState <= 1) ws.close();
    for (const room of this.rooms.values()) room.subscribed = false;
    // What was sent may or may not have taken effect. A publish with a key waits for
    // the next connection (within its timeout, at most `maxQueue` waiting) and is sent
    // again there, where the server answers a repeat with the first one's position;
    // anything else fails: its sender decides.
    const again = [];
    for (const request of [...this._pending.values()]) {
      if (request.resendable && again.length + this._waiting.length < this.options.maxQueue) {
        this._pending.delete(request.id);
        request.id = null;
        request.sentAs ??= { user: this.info.user_id, scope: keyScope(this.info) };
        again.push(request);
      } else {
        this._fail(request, "disconnected", `connection lost (${code})`);
      }
    }
    this._waiting.unshift(...again);
    if (this.state === "closed" || this.state === "failed") return;
    if (this._upSince && Date.now() - this._upSince >= this.options.stableAfter) this._attempt = 0;
    this._upSince = 0;
    if (code === TOKEN_EXPIRED && typeof this.options.token !== "function") {
      this._stop("failed", { code, reason: reason || "token expired" });
      return;
    }
    if (!shouldReconnect(code) || this._attempt >= this.options.maxRetries) {
      this._stop("failed", { code, reason });
      return;
    }
    const delay = backoffDelay(this._attempt++, this.options.minDelay, this.options.maxDelay);
    this._setState("reconnecting", { code, reason, attempt: this._attempt, delay });
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (this.state === "reconnecting") this._open();
    }, delay);
  }

  _stop(state, detail) {
    clearTimeout(this._retryTimer);
    this._stopPings();
    const ws = this._ws;
    this._ws = null;
    this._ready = false;
    this._setState(state, detail);
    if (ws && ws.readyState <= 1) ws.close(1000);
    const code = detail.code ? ` (${detail.code})` : "";
    const why = state === "failed" ? `gave up: ${detail.reason || "closed"}${code}` : "closed by the client";
    for (const request of [...this._pending.values(), ...this._waiting]) {
      // A publish waiting to be sent again may have gone out: not `closed` but `disconnected`.
      this._fail(request, request.sentAs === null ? "closed" : "disconnected", why);
    }
    for (const room of this.rooms.values()) room._refused(new RoomcastError("closed", why), { quiet: true });
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  // Browsers answer the server's WebSocket pings by themselves but cannot send
  // one: a silent connection is checked with the protocol's `ping` op, so a
  // dead network is noticed (and left) instead of waited on forever.
  _startPings() {
    this._stopPings();
    const { pingInterval, pingTimeout } = this.options;
    this._lastFrame = Date.now();
    this._pingTimer = setInterval(() => {
      if (Date.now() - this._lastFrame < pingInterval) return;
      const ws = this._ws;
      this.request("ping", {}, { timeout: pingTimeout }).catch((err) => {
        if (err.code === "timeout" && this._ws === ws) this._lost({ code: 1006, reason: "ping timeout" });
      });
    }, Math.max(250, pingInterval / 4));
  }

  _stopPings() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }
}

function streamUrl(base, rooms, { name, token, lastEventId }) {
  const url = eventsUrl(base);
  for (const room of rooms) url.searchParams.append("room", room);
  if (name) url.searchParams.set("name", name);
  if (token) url.searchParams.set("token", token);
  if (lastEventId) url.searchParams.set("last_event_id", lastEventId);
  return url.href;
}

/**
 * Server-Sent Events for pages that only listen: the same rooms and the same
 * event shapes as `Roomcast`, over a browser `EventSource`.
 *
 *   const feed = new FeedStream(["feed:demo"]);
 *   feed.on("message", (event) => draw(event.room, event.data));
 *   feed.on("state", ({ state }) => indicator(state));
 *
 * EventSource resumes a dropped stream by itself (with `Last-Event-ID`); when
 * the browser gives up (a response other than 200) this opens a new stream
 * from the last id it saw, with the same backoff as `Roomcast`. A close event
 * whose code says "do not reconnect" (3500 and up) ends it: state `failed`.
 */
export class FeedStream extends Emitter {
  constructor(rooms, options = {}) {
    super();
    this.rooms = [...rooms];
    this.options = {
      url: null, // URL or path of /events; default: `events` next to this module
      name: null,
      token: null, // query parameter (access logs record it); or use the cookie
      lastEventId: null,
      minDelay: 500,
      maxDelay: 15000,
      maxRetries: Infinity,
      EventSource: globalThis.EventSource,
      ...options,
    };
    this.state = "idle";
    this.positions = new Map(this.rooms.map((room) => [room, new Position()]));
    this.lastEventId = this.options.lastEventId;
    this._attempt = 0;
    this._everConnected = false;
    this._source = null;
    this._timer = null;
    this._subscribedSeen = 0;
    this._recovered = true;
    this._lastClose = null;
    this._open();
  }

  close() {
    clearTimeout(this._timer);
    this._source?.close();
    this._source = null;
    this._setState("closed");
  }

  _open() {
    this._setState(this._everConnected ? "reconnecting" : "connecting");
    this._subscribedSeen = 0;
    const url = streamUrl(this.options.url, this.rooms, {
      name: this.options.name,
      token: this.options.token,
      lastEventId: this.lastEventId,
    });
    const source = new this.options.EventSource(url);
    this._source = source;
    const on = (type, fn) =>
      source.addEventListener(type, (event) => {
        if (this._source !== source) return;
        if (event.lastEventId) this.lastEventId = event.lastEventId;
        fn(event.data === undefined ? undefined : JSON.parse(event.data), event);
      });
    on("subscribed", (result) => this._subscribed(result));
    on("message", (event) => {
      if (this.positions.get(event.room)?.advance(event) ?? true) this._emit("message", event);
    });
    for (const type of ["join", "leave"]) on(type, (notice) => this._emit(type, notice));
    on("reset", (notice) => {
      this.positions.get(notice.room)?.reset(notice.epoch, notice.offset);
      this._emit("reset", notice);
    });
    on("close", (close) => {
      // The server ends the stream; EventSource reconnects unless told not to.
      this._lastClose = close.code;
      if (!shouldReconnect(close.code)) {
        this._fail(close);
      } else {
        this._setState("reconnecting", close);
      }
    });
    on("error", (error, event) => {
      if (error !== undefined) {
        this._emit("error", error); // the server's `event: error` (e.g. unavailable)
        return;
      }
      if (source.readyState === source.CONNECTING) {
        this._setState("reconnecting", { reason: "stream lost" });
        return;
      }
      // Closed for good by the browser (a status other than 200): open anew, unless
      // the token it has expired (the same token would be refused again).
      source.close();
      if (this._lastClose === TOKEN_EXPIRED && this.options.token) {
        this._fail({ code: TOKEN_EXPIRED, reason: "token expired" });
        return;
      }
      if (this._attempt >= this.options.maxRetries) {
        this._fail({ code: 1006, reason: "gave up" });
        return;
      }
      const delay = backoffDelay(this._attempt++, this.options.minDelay, this.options.maxDelay);
      this._setState("reconnecting", { reason: "stream refused", attempt: this._attempt, delay });
      this._timer = setTimeout(() => this._source === source && this._open(), delay);
    });
  }

  _subscribed(result) {
    const position = this.positions.get(result.room);
    if (position && !result.recovered) position.reset(result.epoch, result.offset);
    this._emit("subscribed", result);
    if (this._subscribedSeen === 0) this._recovered = true;
    this._recovered &&= result.recovered;
    this._subscribedSeen += 1;
    if (this._subscribedSeen < this.rooms.length) return;
    this._subscribedSeen = 0;
    this._attempt = 0;
    const resuming = this._everConnected;
    this._everConnected = true;
    this._setState(resuming && this._recovered ? "resumed" : "connected", {
      resumed: resuming && this._recovered,
    });
  }

  _fail(detail) {
    this._source?.close();
    this._source = null;
    this._setState("failed", detail);
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }
}
