// The chat page: one room, its history, who is here, and the connection's state.
// Everything users wrote is put in the page with textContent, never as HTML.
import { Roomcast, describeState } from "../roomcast.js"; // relative: works under any prefix

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const joinForm = $("join-form");
const composeForm = $("compose-form");
const list = $("messages");
const outbox = $("outbox");
const olderButton = $("load-older");
const status = $("status");
const presence = $("presence");
const whoami = $("whoami");

const PAGE = 50;
const PUBLISH_TIMEOUT = 30000; // ms a message may wait for the connection

let client = null;
let room = null;
let epoch = null;
let known = 0; // the highest offset this page knows of in `epoch`
let hasOlder = false;
let loadingOlder = false;
const members = new Map(); // conn -> user

function setStatus(detail) {
  const { state } = detail;
  status.dataset.state = state;
  status.textContent = describeState(detail);
  composeForm.classList.toggle("offline", state !== "connected" && state !== "resumed");
  if ((state === "connected" || state === "resumed") && client.info) showWho(client.info.user);
}

/** "you are ann": the name the server gave this connection (a token's may differ
 * from the one typed). */
function showWho(user) {
  const name = document.createElement("strong");
  name.textContent = user;
  whoami.replaceChildren("you are ", name);
  whoami.title = `you are ${user}`;
  whoami.hidden = false;
}

function timeOf(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function textOf(data) {
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  return JSON.stringify(data);
}

function messageItem(event) {
  const item = document.createElement("li");
  item.className = "message";
  item.dataset.offset = String(event.offset);
  const sender = document.createElement("span");
  sender.className = "sender";
  sender.textContent = event.sender;
  const time = document.createElement("time");
  time.dateTime = new Date(event.ts * 1000).toISOString();
  time.textContent = timeOf(event.ts);
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = textOf(event.data);
  item.append(sender, time, text);
  return item;
}

/** Put `event` in offset order; an offset already shown is not shown twice. */
function show(event) {
  if (event.epoch !== epoch) return;
  known = Math.max(known, event.offset);
  if (list.querySelector(`[data-offset="${event.offset}"]`)) return;
  const item = messageItem(event);
  const later = [...list.children].find((el) => Number(el.dataset.offset) > event.offset);
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.insertBefore(item, later || null);
  if (!later && atBottom) list.scrollTop = list.scrollHeight;
}

function showPage(page) {
  for (const event of page.events) show(event);
  hasOlder = page.more;
  olderButton.hidden = !hasOlder;
}

/** The line that says messages are gone: at the top of the list, or before `next`. */
function markLost(next = null) {
  const line = document.createElement("li");
  line.className = "lost";
  line.dataset.testid = "history-lost";
  line.setAttribute("role", "status");
  line.textContent = "earlier messages are no longer available";
  list.insertBefore(line, next);
}

/** The latest page of history, up to and including `result.offset`. `since`: where
 * this page had got to, when it resumes (or was reset) rather than joins. When the
 * history it had is gone (a new epoch: the server lost the room's history), or a gap
 * after `since` is older than the server keeps, a line says so. */
async function reload(result, since = null) {
  const lost = since !== null && (result.epoch !== epoch ? known > 0 : true);
  if (result.epoch !== epoch) {
    epoch = result.epoch;
    known = 0;
    list.replaceChildren();
    hasOlder = false;
    olderButton.hidden = true;
    if (lost) markLost();
  }
  known = Math.max(known, result.offset);
  if (result.offset === 0) return; // nothing to load
  const page = await room.history({ before: result.offset + 1, limit: PAGE });
  if (page.epoch !== undefined && page.epoch !== epoch) return; // reset again meanwhile
  showPage(page);
  const first = page.events[0];
  if (lost && since.epoch === epoch && first && first.offset > since.offset + 1) {
    markLost(list.querySelector(`[data-offset="${first.offset}"]`)); // the hole
  }
  list.scrollTop = list.scrollHeight;
}

async function loadOlder() {
  const first = list.querySelector("li.message");
  if (!hasOlder || loadingOlder || !first) return;
  loadingOlder = true;
  try {
    const height = list.scrollHeight;
    showPage(await room.history({ before: Number(first.dataset.offset), limit: PAGE }));
    list.scrollTop += list.scrollHeight - height; // keep the reader's place
  } catch (err) {
    console.warn("history", err);
  } finally {
    loadingOlder = false;
  }
}

function drawPresence() {
  const counts = new Map();
  for (const user of members.values()) counts.set(user, (counts.get(user) || 0) + 1);
  const items = [...counts.keys()].sort().map((user) => {
    const item = document.createElement("li");
    item.textContent = user;
    if (counts.get(user) > 1) item.dataset.connections = String(counts.get(user));
    return item;
  });
  presence.replaceChildren(...items);
}

async function refreshPresence() {
  try {
    const result = await room.presence();
    members.clear();
    for (const member of result.members) members.set(member.conn, member.user);
    drawPresence();
  } catch (err) {
    console.warn("presence", err);
  }
}

async function send(text) {
  const pending = document.createElement("li");
  pending.className = "message pending";
  const label = document.createElement("span");
  label.className = "sender";
  label.textContent = client.state === "connected" || client.state === "resumed" ? "sending…" : "queued";
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  pending.append(label, body);
  outbox.append(pending);
  try {
    await room.publish({ text }, { timeout: PUBLISH_TIMEOUT });
    pending.remove();
  } catch (err) {
    pending.classList.add("failed");
    label.textContent =
      err.code === "disconnected" ? "not confirmed: the connection was lost" : `not sent: ${err.message}`;
  }
}

function join(name, roomName) {
  whoami.hidden = true; // until this connection's reply says who it is
  client = new Roomcast({ name, token: new URLSearchParams(location.hash.slice(1)).get("token") });
  client.on("state", setStatus);
  room = client.room(roomName);
  room.on("message", show);
  room.on("join", (notice) => {
    members.set(notice.conn, notice.user);
    drawPresence();
  });
  room.on("leave", (notice) => {
    members.delete(notice.conn);
    drawPresence();
  });
  // The room's history was lost under a live subscription (e.g. Redis restarted empty).
  room.on("reset", (notice) => reload(notice, { epoch, offset: known }));
  room.on("unsubscribed", () => {
    // The application removed this user from the room: it is no longer followed.
    const notice = $("room-notice");
    notice.textContent = "you were removed from this room";
    notice.hidden = false;
    for (const field of composeForm.elements) field.disabled = true;
    members.clear();
    drawPresence();
  });
  room.on("subscribed", (result) => {
    // Presence notices are not replayed: ask again after every (re)subscribe.
    refreshPresence();
    // A first join (no `since`), or a resume whose gap could not be filled.
    if (!result.recovered) reload(result, result.since ?? null);
  });
  room.subscribe().catch((err) => {
    const error = $("join-error");
    error.textContent = `could not join ${roomName}: ${err.message}`;
    error.hidden = false;
    joinForm.hidden = false;
    document.querySelector("main.room").hidden = true;
    if (client.state !== "failed") client.close(); // else the status says why it gave up
  });
  document.title = `${roomName} · roomcast chat`;
  document.querySelector(".bar h1").textContent = roomName;
  joinForm.hidden = true;
  document.querySelector("main.room").hidden = false;
  $("message-input").focus();
}

joinForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("name-input").value.trim();
  const roomName = $("room-input").value.trim();
  if (name && roomName) join(name, roomName);
});

composeForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("message-input");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  send(text);
});

olderButton.addEventListener("click", loadOlder);
list.addEventListener("scroll", () => {
  if (list.scrollTop < 20) loadOlder();
});

const params = new URLSearchParams(location.search);
if (params.get("name")) $("name-input").value = params.get("name");
if (params.get("room")) $("room-input").value = params.get("room");
$("name-input").focus();
