// "/account/sessions" — where the user is signed in, and a way to end any of it.
// Every session is a card; results are said through the page's own status region.
import * as api from "./api.js";
import { h, replaceChildren } from "./dom.js";

export function sessions(context) {
  const status = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const list = h("div", { class: "stack", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading your sessions…"));
  const endOthers = h(
    "button",
    { type: "button", class: "button button--secondary", hidden: true, onClick: signOutOthers },
    "Sign out all other sessions",
  );

  function say(message) {
    status.textContent = "";
    setTimeout(() => {
      status.textContent = message;
    }, 50);
  }

  /** A failed call: a 401 means this session itself is over; anything else, say it. */
  function failed(answer) {
    if (answer.status === 401) {
      context.navigate(location.pathname); // the app sends a signed-out visitor to sign in
      return;
    }
    context.showError(answer.message);
  }

  async function load(message) {
    const answer = await api.sessions();
    list.removeAttribute("aria-busy");
    if (!answer.ok) {
      replaceChildren(list, h("p", { class: "muted" }, "Your sessions could not be loaded."));
      failed(answer);
      return;
    }
    const all = answer.data.sessions;
    replaceChildren(list, all.map((session) => card(session, signOut)));
    endOthers.hidden = all.filter((session) => !session.current).length === 0;
    if (message) say(message);
  }

  async function signOut(session, button) {
    button.disabled = true;
    const answer = await api.endSession(session.handle);
    button.disabled = false;
    if (answer.status === 404) {
      await load(`${session.agent} was already signed out.`);
    } else if (!answer.ok) {
      failed(answer);
      return;
    } else {
      await load(`Signed out ${session.agent}.`);
    }
    focusTitle();
  }

  async function signOutOthers() {
    endOthers.disabled = true;
    const answer = await api.endOtherSessions();
    endOthers.disabled = false;
    if (!answer.ok) {
      failed(answer);
      return;
    }
    const n = answer.data.ended;
    await load(n === 1 ? "Signed out 1 other session." : `Signed out ${n} other sessions.`);
    focusTitle();
  }

  function focusTitle() {
    // The button that was pressed is gone: keep the keyboard user's place at the heading.
    document.getElementById("page-title")?.focus();
  }

  load();
  return {
    title: "Your sessions",
    node: h(
      "div",
      { class: "stack" },
      h("p", { class: "muted small" }, h("a", { href: "/account" }, "Your account"), " › Sessions"),
      h("h1", { id: "page-title", tabindex: "-1" }, "Your sessions"),
      h(
        "p",
        {},
        "These are the browsers and devices signed in to your account. ",
        "If you don't recognise one, sign it out and change your password.",
      ),
      status,
      list,
      h("div", { class: "actions" }, endOthers),
    ),
  };
}

function card(session, signOut) {
  const titleId = `session-${session.handle}`;
  const signedIn = ago(session.created);
  const children = [
    h(
      "h2",
      { id: titleId, class: "session-card__title" },
      session.agent,
      session.current ? h("span", { class: "badge session-card__this" }, "This device") : null,
    ),
    h(
      "dl",
      { class: "facts" },
      fact("Address", session.address || "Unknown"),
      fact("Signed in", when(session.created, signedIn)),
      fact("Last active", when(session.last_active, session.current ? "now" : ago(session.last_active))),
      // Device-bound (DBSC): a copy of this session's cookie is useless without the device's key.
      fact("Device binding", session.bound ? "Bound to a device key" : "Not bound"),
    ),
  ];
  if (!session.current) {
    const button = h(
      "button",
      { type: "button", class: "button button--secondary" },
      "Sign out",
      // The accessible name says which session: "Sign out Safari on iPhone, signed in …".
      h("span", { class: "visually-hidden" }, ` ${session.agent}, signed in ${signedIn}`),
    );
    button.addEventListener("click", () => signOut(session, button));
    children.push(h("div", { class: "actions" }, button));
  }
  return h(
    "section",
    { class: session.current ? "card session-card session-card--current" : "card session-card", "aria-labelledby": titleId },
    children,
  );
}

function fact(term, value) {
  return h("div", { class: "facts__row" }, h("dt", {}, term), h("dd", {}, value));
}

function when(seconds, text) {
  const date = new Date(seconds * 1000);
  return h("time", { datetime: date.toISOString(), title: date.toLocaleString() }, text);
}

const RELATIVE = new Intl.RelativeTimeFormat("en", { numeric: "always" });

/** "3 minutes ago", "2 hours ago", "just now". */
export function ago(seconds, now = Date.now() / 1000) {
  const elapsed = Math.max(0, now - seconds);
  if (elapsed < 45) return "just now";
  const steps = [
    [60 * 60, 60, "minute"],
    [24 * 60 * 60, 60 * 60, "hour"],
    [30 * 24 * 60 * 60, 24 * 60 * 60, "day"],
    [Infinity, 30 * 24 * 60 * 60, "month"],
  ];
  for (const [limit, unit, name] of steps) {
    if (elapsed < limit - unit / 2) return RELATIVE.format(-Math.max(1, Math.round(elapsed / unit)), name);
  }
  return RELATIVE.format(-Math.round(elapsed / (30 * 24 * 60 * 60)), "month");
}
