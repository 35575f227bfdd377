// Client-side routes on the History API. Reloading any route works because the server answers
// every extension-less path outside /api/ with index.html.

export class Router {
  /** *render(location, {initial})* draws the page for the current URL. */
  constructor(render) {
    this.render = render;
    this.state = null; // one-shot data for the next render (e.g. a flash message)
    window.addEventListener("popstate", () => this.render({ initial: false }));
    document.addEventListener("click", (event) => this.onClick(event));
  }

  start() {
    return this.render({ initial: true });
  }

  /** Go to *path* ("/account?x=1") without reloading; *replace* keeps the history length. */
  navigate(path, { replace = false, state = null } = {}) {
    this.state = state;
    const current = location.pathname + location.search;
    if (replace || path === current) history.replaceState(null, "", path);
    else history.pushState(null, "", path);
    return this.render({ initial: false });
  }

  /** Take the one-shot state left by the last navigate(). */
  takeState() {
    const state = this.state;
    this.state = null;
    return state;
  }

  onClick(event) {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = event.target instanceof Element ? event.target.closest("a[href]") : null;
    if (!link || link.target || link.hasAttribute("download")) return;
    const url = new URL(link.href);
    if (url.origin !== location.origin || !isClientRoute(url.pathname)) return;
    event.preventDefault();
    this.navigate(url.pathname + url.search);
  }
}

/** Paths the SPA draws itself: no file extension, not the API. */
export function isClientRoute(pathname) {
  const last = pathname.split("/").pop();
  return !pathname.startsWith("/api/") && !last.includes(".") && pathname !== "/logout";
}

/**
 * A safe place to return to after signing in: a path on this origin, never another site.
 *
 * The URL API resolves *value* the way the browser would (dot segments, %2e, backslashes,
 * tabs and newlines dropped), then the result must name this origin and still do so when
 * used on its own: "/.//evil.example" resolves to the path "//evil.example", which as a link
 * or a pushState() target is another host. Anything else, and /login itself, is "/".
 */
export function safeNext(value) {
  if (typeof value !== "string" || !value.startsWith("/")) return "/";
  let url;
  try {
    url = new URL(value, location.origin);
  } catch {
    return "/";
  }
  const path = url.pathname + url.search;
  if (url.origin !== location.origin || url.pathname === "/login") return "/";
  if (!path.startsWith("/") || path.startsWith("//")) return "/";
  return new URL(path, location.origin).origin === location.origin ? path : "/";
}
