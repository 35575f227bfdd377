// The campus HTTP API. Every call resolves (never throws) to
// {status, ok, data, message, retryAfter, reference}; status 0 means the server could not be
// reached. Errors carry the server's own {"errorMessage": ...}, which is what the user is shown;
// for a server failure (5xx, or an answer that is not ours) the message ends with the request's
// id, "(reference: ...)", which the user can quote and which names the server's log lines.

export const OFFLINE_MESSAGE = "Cannot reach the campus server. Check your connection and try again.";

async function request(method, path, body) {
  const init = {
    method,
    headers: { Accept: "application/json" },
    credentials: "same-origin",
    cache: "no-store",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    const offline = { message: OFFLINE_MESSAGE, retryAfter: null, reference: null };
    return { status: 0, ok: false, data: null, ...offline };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null; // not JSON: e.g. a proxy's HTML error page
  }
  const serverMessage = data && typeof data.errorMessage === "string" ? data.errorMessage : "";
  const reference = response.headers.get("X-Request-ID");
  let message = response.ok ? "" : serverMessage || `Something went wrong (HTTP ${response.status}).`;
  if (reference && (response.status >= 500 || (!response.ok && !serverMessage))) {
    message = `${message} (reference: ${reference})`;
  }
  return {
    status: response.status,
    ok: response.ok,
    data,
    message,
    retryAfter: seconds(response.headers.get("Retry-After")),
    reference,
  };
}

function seconds(header) {
  if (header === null || !/^\d+$/.test(header.trim())) return null;
  return Number(header.trim());
}

export const me = () => request("GET", "/api/me");
export const login = (email, password) => request("POST", "/login", { email, password });
// POST: GET /logout stays for old clients, and is refused when another site's page asks.
export const logout = () => request("POST", "/logout");
export const sessions = () => request("GET", "/api/sessions");
export const endSession = (handle) => request("DELETE", `/api/sessions/${encodeURIComponent(handle)}`);
export const endOtherSessions = () => request("POST", "/api/sessions/end-others", {});
