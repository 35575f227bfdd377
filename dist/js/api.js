// The campus HTTP API. Every call resolves (never throws) to
// {status, ok, data, message, retryAfter}; status 0 means the server could not be reached.
// Errors carry the server's own {"errorMessage": ...}, which is what the user is shown.

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
    return { status: 0, ok: false, data: null, message: OFFLINE_MESSAGE, retryAfter: null };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null; // not JSON: e.g. a proxy's HTML error page
  }
  const serverMessage = data && typeof data.errorMessage === "string" ? data.errorMessage : "";
  return {
    status: response.status,
    ok: response.ok,
    data,
    message: response.ok ? "" : serverMessage || `Something went wrong (HTTP ${response.status}).`,
    retryAfter: seconds(response.headers.get("Retry-After")),
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
