// The console's only way to the server: the documented HTTP API with the caller's bearer key.
// The OpenAPI document (/openapi.json) is read once; a panel whose endpoint is not in it says so
// instead of calling an undocumented path.

const KEY_STORAGE = 'lienwatch.apiKey';

/** An API answer that was not 2xx: status, and the problem+json title/detail when there is one. */
export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

/** An endpoint the server's OpenAPI document does not list. */
export class MissingEndpoint extends Error {
  constructor(method, path) {
    super(`the API does not offer ${method.toUpperCase()} ${path}`);
    this.method = method;
    this.path = path;
  }
}

export function storedKey() { return sessionStorage.getItem(KEY_STORAGE) || ''; }
export function storeKey(key) { sessionStorage.setItem(KEY_STORAGE, key); }
export function forgetKey() { sessionStorage.removeItem(KEY_STORAGE); }

/** OpenAPI path templates ('/devices/{device_id}/track') matched against concrete paths. */
export class Spec {
  constructor(doc) {
    this.doc = doc;
    this.templates = Object.entries(doc.paths || {}).map(([template, ops]) => ({
      template,
      methods: new Set(Object.keys(ops).map((m) => m.toLowerCase())),
      re: new RegExp('^' + template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+') + '$'),
    }));
  }

  /** True when `method path` (a concrete path, query string ignored) is documented. */
  has(method, path) {
    const bare = path.split('?')[0];
    return this.templates.some((t) => t.methods.has(method.toLowerCase()) && t.re.test(bare));
  }

  /** The names of a documented operation's query parameters. */
  queryParams(method, template) {
    const op = (this.doc.paths?.[template] || {})[method.toLowerCase()];
    return new Set((op?.parameters || []).filter((p) => p.in === 'query').map((p) => p.name));
  }
}

export class Api {
  constructor(base = '') {
    this.base = base;
    this.spec = null;
  }

  async loadSpec() {
    const response = await fetch(`${this.base}/openapi.json`);
    if (!response.ok) throw new ApiError(response.status, 'cannot read the API description');
    this.spec = new Spec(await response.json());
    return this.spec;
  }

  has(method, path) { return this.spec !== null && this.spec.has(method, path); }

  /** The error a panel shows for an endpoint the API does not document. */
  missing(method, path) { return new MissingEndpoint(method, path); }

  async request(method, path, body) {
    if (!this.has(method, path)) throw new MissingEndpoint(method, path);
    const headers = { Accept: 'application/json' };
    const key = storedKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(`${this.base}${path}`, {
      method: method.toUpperCase(), headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      let title = response.statusText || `HTTP ${response.status}`;
      let detail = '';
      try {
        const problem = await response.json();
        title = problem.title || title;
        detail = problem.detail || '';
      } catch { /* not JSON: keep the status line */ }
      throw new ApiError(response.status, title, detail);
    }
    if (response.status === 204) return null;
    return response.json();
  }

  get(path) { return this.request('get', path); }
  post(path, body) { return this.request('post', path, body ?? {}); }
}

/** '/events?state=open&device_id=x' with empty values left out. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export const api = new Api();
