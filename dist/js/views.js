// The pages. Each view returns {title, node}; main.js puts node in <main> and moves focus.
import * as api from "./api.js";
import { h, replaceChildren } from "./dom.js";
import { safeNext } from "./router.js";

const KNOWN_FIELDS = ["name", "email", "roles"];

/** "/" — who is signed in, and where to go from here. */
export function home(context, { flash }) {
  const user = context.user;
  const firstName = (user.name || "").split(/\s+/)[0] || user.email;
  const node = h(
    "div",
    { class: "stack" },
    flashNotice(flash),
    h(
      "section",
      { class: "hero", "aria-labelledby": "page-title" },
      h("p", { class: "hero__eyebrow" }, greeting()),
      h("h1", { id: "page-title", tabindex: "-1" }, `Welcome, ${firstName}`),
      h("p", { class: "hero__lead" }, "You are signed in to the campus portal."),
    ),
    h(
      "div",
      { class: "cards" },
      h(
        "section",
        { class: "card", "aria-labelledby": "profile-title" },
        h("h2", { id: "profile-title" }, "Your profile"),
        h(
          "dl",
          { class: "facts" },
          fact("Name", user.name || "—"),
          fact("Email", user.email),
          fact("Roles", roleBadges(user.roles)),
        ),
        h("a", { href: "/account", class: "card__link" }, "View your account"),
      ),
      h(
        "section",
        { class: "card card--tip", "aria-labelledby": "shared-title" },
        h("h2", { id: "shared-title" }, "On a shared computer?"),
        h(
          "p",
          {},
          "In the library or a computer lab, always sign out when you are done. ",
          "Your session also ends by itself after a period of inactivity.",
        ),
        h(
          "button",
          { type: "button", class: "button button--secondary", onClick: context.signOut },
          "Sign out now",
        ),
      ),
    ),
  );
  return { title: "Home", node };
}

/** "/login" — the sign-in form, or a note for someone already signed in. */
export function login(context, { flash, params }) {
  const next = safeNext(params.get("next"));
  if (context.user) {
    return {
      title: "Sign in",
      node: h(
        "section",
        { class: "panel", "aria-labelledby": "page-title" },
        h("h1", { id: "page-title", tabindex: "-1" }, "You are already signed in"),
        h("p", {}, "Signed in as ", h("strong", {}, context.user.name || context.user.email), "."),
        h(
          "div",
          { class: "actions" },
          h("a", { href: next, class: "button" }, "Continue"),
          h(
            "button",
            { type: "button", class: "button button--secondary", onClick: context.signOut },
            "Sign out",
          ),
        ),
      ),
    };
  }

  const errorRegion = h("div", { id: "login-error", role: "alert" });
  const email = h("input", {
    id: "email",
    name: "email",
    type: "email",
    autocomplete: "username",
    required: true,
    spellcheck: "false",
    "data-autofocus": true,
  });
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit", class: "button button--wide" }, "Sign in");

  function showError(answer) {
    const lines = [h("p", { class: "alert__title" }, answer.message)];
    if ((answer.status === 429 || answer.status === 503) && answer.retryAfter) {
      lines.push(h("p", {}, `You can try again in ${duration(answer.retryAfter)}.`));
    }
    replaceChildren(errorRegion, h("div", { class: "alert" }, lines));
    for (const field of [email, password]) field.setAttribute("aria-describedby", "login-error");
    if (answer.status === 403) {
      for (const field of [email, password]) field.setAttribute("aria-invalid", "true");
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    replaceChildren(errorRegion);
    for (const field of [email, password]) {
      field.removeAttribute("aria-invalid");
      field.removeAttribute("aria-describedby");
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    const answer = await api.login(email.value, password.value);
    submit.disabled = false;
    submit.textContent = "Sign in";
    if (answer.ok) {
      context.signedIn(answer.data.user);
      context.navigate(next);
      return;
    }
    showError(answer);
    password.value = "";
    password.focus();
  }

  const form = h(
    "form",
    // method/action only matter if the script never ran: POST, so a password never lands in a URL.
    { method: "post", action: "/login", class: "form", onSubmit },
    h(
      "div",
      { class: "field" },
      h("label", { for: "email" }, "Email address"),
      email,
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "password" }, "Password"),
      password,
    ),
    submit,
  );

  return {
    title: "Sign in",
    node: h(
      "div",
      { class: "login" },
      h(
        "section",
        { class: "panel panel--narrow", "aria-labelledby": "page-title" },
        h("h1", { id: "page-title", tabindex: "-1" }, "Sign in"),
        h("p", { class: "muted" }, "Use your campus email address and password."),
        flashNotice(flash),
        errorRegion,
        form,
        h(
          "p",
          { class: "muted small" },
          "Forgotten your password? Contact the IT service desk.",
        ),
      ),
    ),
  };
}

/** "/account" — everything the server knows about the user (never the password hash). */
export function account(context, { flash }) {
  const user = context.user;
  const extra = Object.keys(user).filter((key) => !KNOWN_FIELDS.includes(key));
  const node = h(
    "div",
    { class: "stack" },
    flashNotice(flash),
    h("h1", { id: "page-title", tabindex: "-1" }, "Your account"),
    h(
      "section",
      { class: "card", "aria-labelledby": "details-title" },
      h("h2", { id: "details-title" }, "Details"),
      h(
        "dl",
        { class: "facts" },
        fact("Name", user.name || "—"),
        fact("Email", user.email),
        fact("Roles", roleBadges(user.roles)),
        extra.map((key) => fact(label(key), display(user[key]))),
      ),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "security-title" },
      h("h2", { id: "security-title" }, "Sign out"),
      h(
        "p",
        {},
        "Signing out ends your session on the server. This browser keeps only a note that " +
          "you signed in with it, so that others' failed attempts never lock it out.",
      ),
      h("p", {}, h("a", { href: "/account/sessions" }, "See where you are signed in"), "."),
      h(
        "button",
        { type: "button", class: "button button--secondary", onClick: context.signOut },
        "Sign out of campus",
      ),
    ),
  );
  return { title: "Your account", node };
}

/** Any other path. */
export function notFound() {
  return {
    title: "Page not found",
    node: h(
      "section",
      { class: "panel", "aria-labelledby": "page-title" },
      h("h1", { id: "page-title", tabindex: "-1" }, "Page not found"),
      h("p", {}, "There is no page at this address. It may have moved."),
      h("a", { href: "/", class: "button" }, "Go to the home page"),
    ),
  };
}

/** The session could not be checked: the store is down (503), or the network is. */
export function unavailable(context, answer, retry) {
  return {
    title: "Service unavailable",
    node: h(
      "section",
      { class: "panel", "aria-labelledby": "page-title" },
      h("h1", { id: "page-title", tabindex: "-1" }, "We can't check your session right now"),
      h("div", { role: "alert" }, h("div", { class: "alert" }, h("p", { class: "alert__title" }, answer.message))),
      h("p", {}, "This is usually brief. Please try again in a moment."),
      h("button", { type: "button", class: "button", onClick: retry }, "Try again"),
    ),
  };
}

function flashNotice(message) {
  return message ? h("p", { class: "notice" }, message) : null;
}

function fact(term, value) {
  return h("div", { class: "facts__row" }, h("dt", {}, term), h("dd", {}, value));
}

function roleBadges(roles) {
  if (!Array.isArray(roles) || roles.length === 0) return "—";
  return h(
    "ul",
    { class: "badges" },
    roles.map((role) => h("li", { class: "badge" }, String(role))),
  );
}

function label(key) {
  const words = key.replace(/[_-]+/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function display(value) {
  if (Array.isArray(value)) return value.map(display).join(", ");
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function greeting() {
  const hour = new Date().getHours();
  if (hour < 12) return "Good morning";
  if (hour < 18) return "Good afternoon";
  return "Good evening";
}

function duration(seconds) {
  if (seconds === 1) return "1 second";
  if (seconds < 90) return `${seconds} seconds`;
  return `${Math.ceil(seconds / 60)} minutes`;
}
