// The chat page: the rooms this user may use, through roomcast mounted at /rt.
// What users wrote goes into the page with textContent, never as HTML.
import { Roomcast, describeState } from "/rt/roomcast.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const DISCONNECTED_BY_APP = 3503; // the app closed our connections: we logged out elsewhere

const views = new Map(); // room id -> { room, list, tab, epoch }
let active = null;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function messageItem(event) {
  const { data } = event;
  const item = element("li", data.announcement ? "announcement" : "message");
  item.dataset.offset = String(event.offset);
  const sender = data.announcement ? `${event.sender} from ${data.by}` : event.sender;
  const at = data.at ?? new Date(event.ts * 1000).toISOString(); // the hook's, else the event's
  const time = element("time", "", new Date(at).toLocaleTimeString());
  time.dateTime = at;
  item.append(element("span", "sender", sender));
  if (data.role === "staff") item.append(element("span", "role", "staff"));
  item.append(time, element("p", "text", data.text));
  return item;
}

/** Put a message in offset order, once. */
function show(view, event) {
  if (event.epoch !== view.epoch) return; // not of the stream shown
  if (view.list.querySelector(`[data-offset="${event.offset}"]`)) return;
  const later = [...view.list.children].find((li) => Number(li.dataset.offset) > event.offset);
  view.list.insertBefore(messageItem(event), later || null);
  view.list.scrollTop = view.list.scrollHeight;
}

/** The latest messages up to `position`: on the first subscribe, and when a gap
 * could not be filled (`recovered: false`, or the server's `reset`). */
async function reload(view, { epoch, offset }) {
  if (epoch !== view.epoch) {
    view.epoch = epoch; // a new history stream: start over
    view.list.replaceChildren();
  }
  try {
    const page = await view.room.history({ before: offset + 1, limit: 50 });
    for (const event of page.events) show(view, event);
  } catch (err) {
    console.warn("history", err); // lost with the connection: the resubscribe reloads
  }
}

function note(view, text, className = "note") {
  view.list.append(element("li", className, text));
  view.list.scrollTop = view.list.scrollHeight;
}

function select(id) {
  active = views.get(id);
  for (const view of views.values()) {
    view.list.hidden = view !== active;
    view.tab.setAttribute("aria-pressed", String(view === active));
  }
  active.tab.classList.remove("unread");
}

function start(me) {
  $("me").textContent = `${me.name} (${me.role})`;
  // No options: roomcast.js connects to /rt/ws, next to where it was loaded from,
  // and the browser sends the session cookie with the handshake.
  const client = new Roomcast();
  client.on("state", (detail) => {
    $("status").dataset.state = detail.state;
    $("status").textContent = describeState(detail);
    if (detail.state === "failed" && detail.code === DISCONNECTED_BY_APP) location.reload();
  });

  for (const { id, title } of me.rooms) {
    const list = element("ul", "messages");
    list.dataset.room = id;
    const tab = element("button", "tab", title);
    tab.type = "button";
    tab.dataset.room = id;
    tab.addEventListener("click", () => select(id));
    $("lists").append(list);
    $("rooms").append(tab);
    const view = { room: client.room(id), list, tab, epoch: null };
    views.set(id, view);
    view.room.on("message", (event) => {
      show(view, event);
      if (view !== active) view.tab.classList.add("unread");
    });
    view.room.on("subscribed", (result) => result.recovered || reload(view, result));
    view.room.on("reset", (notice) => reload(view, notice));
    view.room.subscribe().catch((err) => note(view, `could not join: ${err.message}`, "refused"));
  }
  select(me.rooms[0].id);

  $("compose").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("message-input");
    const text = input.value.trim();
    input.value = "";
    if (!text) return;
    const view = active;
    try {
      await view.room.publish({ text });
    } catch (err) {
      note(view, `not sent: “${text}”: ${err.message}`, "refused");
    }
  });

  if (me.role !== "staff") return;
  $("announce-form").hidden = false;
  $("announce-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("announce-input");
    const reply = await fetch("/announce", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: input.value.trim() }),
    });
    if (reply.ok) input.value = "";
    else note(active, `announcement not sent (${reply.status})`, "refused");
  });
}

const reply = await fetch("/me");
if (reply.ok) start(await reply.json());
else location.replace("/"); // the session ended: back to the login form
