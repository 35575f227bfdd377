// The campus SPA: asks the server who is signed in, then draws the page for the URL.
import * as api from "./api.js";
import { h, replaceChildren } from "./dom.js";
import { Router } from "./router.js";
import { sessions } from "./sessions.js";
import * as views from "./views.js";

const ROUTES = {
  "/": { view: views.home, signedIn: true },
  "/login": { view: views.login, signedIn: false },
  "/account": { view: views.account, signedIn: true },
  "/account/sessions": { view: sessions, signedIn: true },
};

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const announcer = document.getElementById("announcer");
const nav = document.getElementById("site-nav");
const sessionBox = document.getElementById("session");
const sessionName = document.getElementById("session-name");
const signInLink = document.getElementById("signin");

let user = null; // the signed-in user as /api/me last reported it, or null
let renders = 0; // a newer render makes an older one's late answers moot

const router = new Router(render);

const context = {
  get user() {
    return user;
  },
  navigate: (path, options) => router.navigate(path, options),
  signedIn(newUser) {
    setUser(newUser);
  },
  signOut,
  showError,
};

async function render({ initial }) {
  const ticket = ++renders;
  const route = ROUTES[location.pathname] ?? { view: views.notFound, signedIn: false };
  const flash = router.takeState();
  const answer = await api.me();
  if (ticket !== renders) return;
  clearError();

  if (answer.status === 200) {
    setUser(answer.data.user);
  } else if (answer.status === 401) {
    const hadUser = user !== null;
    setUser(null);
    if (route.signedIn) {
      const next = location.pathname + location.search;
      const query = next === "/" ? "" : `?next=${encodeURIComponent(next)}`;
      const message = hadUser ? "Your session has ended. Please sign in again." : flash;
      router.navigate(`/login${query}`, { replace: true, state: message });
      return;
    }
  } else {
    show(views.unavailable(context, answer, () => render({ initial: false })), initial);
    return;
  }
  show(route.view(context, { flash, params: new URLSearchParams(location.search) }), initial);
  if (flash) announce(flash);
}

function show({ title, node }, initial) {
  replaceChildren(main, node);
  document.title = title ? `${title} · Campus` : "Campus";
  markCurrentLink();
  signInLink.hidden = user !== null || location.pathname === "/login";
  if (!initial) {
    // A route change is a new page to assistive technology: move focus to its heading.
    const heading = main.querySelector("h1");
    (heading ?? main).focus();
  }
  const autofocus = initial ? main.querySelector("[data-autofocus]") : null;
  if (autofocus) autofocus.focus();
}

function setUser(newUser) {
  user = newUser ?? null;
  nav.hidden = user === null;
  sessionBox.hidden = user === null;
  sessionName.textContent = user ? user.name || user.email : "";
}

function markCurrentLink() {
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === location.pathname) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function signOut(event) {
  const button = event?.currentTarget instanceof HTMLButtonElement ? event.currentTarget : null;
  if (button) button.disabled = true;
  const answer = await api.logout();
  if (button) button.disabled = false;
  if (!answer.ok) {
    showError(answer.message);
    return;
  }
  setUser(null);
  router.navigate("/login", { state: "You have been signed out." });
}

/** Say *message* through the page's polite live region (present from the start, so heard). */
function announce(message) {
  announcer.textContent = "";
  setTimeout(() => {
    announcer.textContent = message;
  }, 50);
}

function showError(message) {
  replaceChildren(banner, h("p", { class: "banner__message" }, message));
}

function clearError() {
  replaceChildren(banner);
}

document.getElementById("logout").addEventListener("click", signOut);
router.start();
