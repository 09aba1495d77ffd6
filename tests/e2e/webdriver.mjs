// A minimal W3C WebDriver client over fetch, for tauri-driver (which hands
// the session to WebKitWebDriver driving the app's web view). Elements are
// found by ARIA role and accessible name, as the browser tests find them
// with Playwright's getByRole: WebDriver has no such locator, so a script in
// the page lists the elements of a role, and WebDriver's "Get Computed
// Label" (the engine's own accessible-name computation) names them.

const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";
const COMMAND_TIMEOUT_MS = 60_000;

export class WebDriver {
  constructor(baseUrl) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.session = null;
    /** Whether the driver computes accessible names (null: not asked yet). */
    this.computedLabels = null;
  }

  async command(method, path, body) {
    let response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: body === undefined ? {} : { "Content-Type": "application/json; charset=utf-8" },
        body: body === undefined ? undefined : JSON.stringify(body),
        // A command the driver never answers fails the test instead of hanging it.
        signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS),
      });
    } catch (error) {
      throw new Error(`WebDriver ${method} ${path} got no answer: ${error.message}`);
    }
    const text = await response.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      throw new Error(`WebDriver ${method} ${path} answered ${response.status}: ${text.slice(0, 500)}`);
    }
    if (!response.ok || json.value?.error) {
      const error = new Error(`WebDriver ${method} ${path}: ${json.value?.error}: ${json.value?.message}`);
      error.code = json.value?.error;
      throw error;
    }
    return json.value;
  }

  sessionCommand(method, path, body) {
    return this.command(method, `/session/${this.session}${path}`, body);
  }

  /** Starts the app: tauri-driver reads `tauri:options.application` (no browserName). */
  async start(application, args = []) {
    const value = await this.command("POST", "/session", {
      capabilities: { alwaysMatch: { "tauri:options": { application, args } } },
    });
    this.session = value.sessionId;
    return value;
  }

  async quit() {
    if (!this.session) return;
    const session = this.session;
    this.session = null;
    await this.command("DELETE", `/session/${session}`).catch(() => {});
  }

  /** Runs `script` (a function body) in the page with `args`; returns its result. */
  execute(script, args = []) {
    return this.sessionCommand("POST", "/execute/sync", { script, args });
  }

  /** Runs `script` with a callback as its last argument; resolves with what it is called with. */
  executeAsync(script, args = []) {
    return this.sessionCommand("POST", "/execute/async", { script, args });
  }

  title() {
    return this.sessionCommand("GET", "/title");
  }

  async screenshot() {
    return Buffer.from(await this.sessionCommand("GET", "/screenshot"), "base64");
  }

  click(element) {
    return this.sessionCommand("POST", `/element/${element[ELEMENT]}/click`, {});
  }

  text(element) {
    return this.sessionCommand("GET", `/element/${element[ELEMENT]}/text`);
  }

  attribute(element, name) {
    return this.sessionCommand("GET", `/element/${element[ELEMENT]}/attribute/${encodeURIComponent(name)}`);
  }

  /** The accessible name as the engine computes it, or the page script's when the driver cannot. */
  async label(element, fallback) {
    if (this.computedLabels !== false) {
      try {
        const label = await this.sessionCommand("GET", `/element/${element[ELEMENT]}/computedlabel`);
        this.computedLabels = true;
        return label;
      } catch (error) {
        if (this.computedLabels === true || error.code !== "unknown command") throw error;
        this.computedLabels = false;
      }
    }
    return fallback;
  }

  /**
   * The visible elements with ARIA role `role` (explicit, or implied by the
   * tag) whose accessible name matches `name` (a string: equal; a RegExp:
   * matches), inside `within` (an element) or the whole page.
   */
  async findAllByRole(role, name, within = null) {
    const found = await this.execute(ROLE_SCRIPT, [role, within]);
    const matching = [];
    for (const { element, name: scriptName } of found) {
      const label = (await this.label(element, scriptName)).trim().replace(/\s+/g, " ");
      const ok = name === undefined || (name instanceof RegExp ? name.test(label) : label === name);
      if (ok) matching.push(element);
    }
    return matching;
  }

  /** Exactly one element of `role` named `name`, else an error that says what was there. */
  async getByRole(role, name, within = null) {
    const all = await this.findAllByRole(role, name, within);
    if (all.length !== 1) {
      const found = await this.execute(ROLE_SCRIPT, [role, within]);
      throw new Error(
        `expected one ${role} named ${name}, found ${all.length}; the ${role}s are: ${JSON.stringify(found.map((f) => f.name))}`,
      );
    }
    return all[0];
  }
}

// Lists the visible elements of a role with a plain accessible name (aria-label,
// aria-labelledby, a label element, else the text) for drivers that cannot compute it.
const ROLE_SCRIPT = `
const [role, within] = arguments;
const implicit = {
  button: 'button, input[type=button], input[type=submit], summary',
  link: 'a[href]',
  listitem: 'li',
  list: 'ul, ol',
  article: 'article',
  heading: 'h1, h2, h3, h4, h5, h6',
  navigation: 'nav',
  main: 'main',
  dialog: 'dialog',
  searchbox: 'input[type=search]',
  textbox: 'input:not([type]), input[type=text], input[type=password], textarea',
  progressbar: 'progress',
  region: 'section[aria-label], section[aria-labelledby]',
};
const selector = '[role~="' + role + '"]' + (implicit[role] ? ', ' + implicit[role] : '');
const root = within || document;
const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
const name = (el) => {
  const labelled = el.getAttribute('aria-labelledby');
  if (labelled) return labelled.split(/\\s+/).map((id) => document.getElementById(id)?.textContent || '').join(' ');
  if (el.getAttribute('aria-label')) return el.getAttribute('aria-label');
  if (el.labels && el.labels.length) return Array.from(el.labels).map((l) => l.textContent).join(' ');
  if (el.getAttribute('title')) return el.getAttribute('title');
  return el.textContent || '';
};
return Array.from(root.querySelectorAll(selector))
  .filter((el) => { const r = el.getAttribute('role'); return (!r || r.split(/\\s+/).includes(role)) && visible(el); })
  .map((el) => ({ element: el, name: name(el).trim().replace(/\\s+/g, ' ') }));
`;
