// The API client: bearer token from sessionStorage, JSON in and out, errors as ApiError, exports,
// and server-sent events read with fetch() (EventSource cannot send an Authorization header).

const TOKEN = 'instrushare.token';
// The API lives one level above the dashboard (/ui/ -> /), also behind a path prefix.
const BASE = new URL('../', document.baseURI.split('#')[0]);

export class ApiError extends Error {
  /** ``details``: what the API gave with its refusal, a list (a file's bad lines) or an
   * object (the booking in the way);
   * ``reason``: the API's code for what stood in the way, which the dashboard words itself. */
  constructor(status, code, message, details = [], reason = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.reason = reason;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  save(token) { sessionStorage.setItem(TOKEN, token); },
  clear() { sessionStorage.removeItem(TOKEN); },
};

export function apiUrl(path, params = {}) {
  const url = new URL(path.replace(/^\//, ''), BASE);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') url.searchParams.set(key, value);
  }
  return url;
}

/** ``body``: sent as JSON, or as it is with ``contentType`` (a CSV file, say). */
async function request(path, params, {
  token, signal, accept = 'application/json', method = 'GET', body, contentType,
} = {}) {
  const headers = { Authorization: `Bearer ${token ?? session.token ?? ''}`, Accept: accept };
  if (body !== undefined) headers['Content-Type'] = contentType ?? 'application/json';
  let resp;
  try {
    resp = await fetch(apiUrl(path, params), {
      method, headers, cache: 'no-store', signal,
      body: body === undefined || contentType ? body : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', ''); // the browser's words (Failed to fetch) add nothing
  }
  if (!resp.ok) {
    let body = {};
    try { body = await resp.json(); } catch { /* not JSON */ }
    throw new ApiError(resp.status, body.error ?? `http_${resp.status}`,
      body.message ?? resp.statusText, body.details ?? [],
      body.reason ?? null);
  }
  return resp;
}

export async function getJson(path, params = {}, options = {}) {
  return (await request(path, params, options)).json();
}

/** The most items the API gives in one page of a list. */
export const PAGE = 1000;

/** Every item of a paged list, not just a page of it: a state timeline of 30 busy days or a
 * province's instruments run to thousands. The pages after the first are asked at once. */
export async function getAll(path, params = {}, options = {}) {
  const page = await getJson(path, { ...params, limit: PAGE }, options);
  const size = page.items.length;
  const offsets = [];
  for (let at = page.offset + size; size && at < page.total; at += size) offsets.push(at);
  const rest = await Promise.all(offsets.map((offset) => getJson(path,
    { ...params, limit: size, offset }, options)));
  return page.items.concat(...rest.map((p) => p.items));
}

/** POST ``body`` as JSON (none for actions that take no body); the answer's JSON. */
export async function postJson(path, body, options = {}) {
  return (await request(path, {}, { ...options, method: 'POST', body })).json();
}

/** POST a CSV file's ``text``; the answer's JSON. */
export async function postCsv(path, text, options = {}) {
  return (await request(path, {}, { ...options, method: 'POST', body: text, contentType: 'text/csv' })).json();
}

/** PUT ``body`` as JSON; the answer's JSON. */
export async function putJson(path, body, options = {}) {
  return (await request(path, {}, { ...options, method: 'PUT', body })).json();
}

/** DELETE ``path`` (answers carry no body). */
export async function deleteResource(path, options = {}) {
  await request(path, {}, { ...options, method: 'DELETE' });
}

/** Fetch a CSV or XLSX export with the token and hand it to the browser as a download. */
export async function download(path, params) {
  const resp = await request(path, params, { accept: '*/*' });
  const disposition = resp.headers.get('Content-Disposition') ?? '';
  const match = /filename="?([^";]+)"?/.exec(disposition);
  const blob = await resp.blob();
  const href = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = href;
  link.download = match ? match[1] : `export.${params.format ?? 'csv'}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 30000);
}

/**
 * Read a server-sent-events stream until it ends. ``onFirst`` runs (and is awaited) when the
 * first bytes arrive, i.e. once the server has taken its snapshot: a board loaded then misses
 * no change. ``onEvent(type, data)`` runs per event; comments and keep-alives are skipped.
 * The connection is closed whatever ends the reading: a failed ``onFirst`` too, or a page
 * retrying would hold one open per attempt, and the browser gives a server only six.
 */
export async function streamEvents(path, params, { signal, onFirst, onEvent }) {
  const resp = await request(path, params, { signal, accept: 'text/event-stream' });
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    await readEvents(reader, onFirst, onEvent);
  } finally {
    reader.cancel().catch(() => {}); // already ended or aborted: nothing left to close
  }
}

async function readEvents(reader, onFirst, onEvent) {
  let buffer = '';
  let first = true;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    if (first) {
      first = false;
      await onFirst?.();
    }
    buffer += value.replace(/\r\n/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'event') type = text;
        else if (field === 'data') data.push(text);
      }
      if (data.length) onEvent(type, data.join('\n'));
    }
  }
}
