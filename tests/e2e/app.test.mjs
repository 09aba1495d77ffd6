// The real desktop app (target/debug/orchard-desktop) under a virtual X
// display, driven through tauri-driver and WebKitWebDriver (Debian's
// webkit2gtk-driver) in a D-Bus session, with NO_AT_BRIDGE=1 (WebKitGTK
// stalls without it). The SmolLM2 fixture is laid out in the app's Hugging
// Face cache; its Hub is the fake Hub, so nothing leaves the machine.
//
// macOS has no WebDriver for its web view: there, check these by hand.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before } from "node:test";

import { MODEL_REPO, startFakeHub } from "./fake-hub.mjs";
import {
  Child,
  DESKTOP,
  FIXTURE,
  ROOT,
  api,
  createKey,
  freePort,
  installInCache,
  need,
  orchardEnv,
  ordered,
  repoPattern,
  saveLog,
  screenshotPath,
  sleep,
  tempDir,
  waitFor,
} from "./harness.mjs";
import { WebDriver } from "./webdriver.mjs";

const TAURI_DRIVER = process.env.TAURI_DRIVER ?? join(ROOT, ".deps/tauri-driver/bin/tauri-driver");
const NATIVE_DRIVER = process.env.WEBKIT_WEBDRIVER ?? "/usr/bin/WebKitWebDriver";

let hub;
let env;
let xvfb;
let driverProcess;
let driver;
let port;
let key;
let display;
// tauri-driver and WebKitWebDriver exist for Linux; macOS has no WebDriver for its web view.
const notLinux =
  process.platform === "linux" ? null : "no WebDriver for the app's web view here: check the Models screens by hand";

/** Starts Xvfb on a display it picks; returns the process and ":N". */
async function startXvfb() {
  const child = new Child("Xvfb", ["-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"], {
    name: "Xvfb",
  });
  const [, number] = await child.waitForOutput(/^(\d+)\s*$/m, 30_000);
  return [child, `:${number}`];
}

before(async () => {
  if (notLinux) return;
  need(FIXTURE, "run `make setup`");
  need(DESKTOP, "build it with `cargo build -p orchard-desktop` (make test-e2e does)");
  need(TAURI_DRIVER, "run `make setup` (it installs tauri-driver into .deps/tauri-driver)");
  need(NATIVE_DRIVER, "install Debian's webkit2gtk-driver (`make setup`)");
  hub = await startFakeHub({ fixture: FIXTURE });
  env = orchardEnv(tempDir("orchard-e2e-app-"), hub.url);
  installInCache(env.HF_HUB_CACHE, MODEL_REPO, FIXTURE, hub.repos[0].sha);

  // The app's settings live in ORCHARD_HOME: a key of our own (so the API it
  // hosts can be asked too) and a free port for that API.
  key = createKey(env);
  port = await freePort();
  const set = spawnSync(
    "python3",
    [
      "-c",
      "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute(\"INSERT OR REPLACE INTO settings (key, value) VALUES ('port', ?)\", (sys.argv[2],)); db.commit()",
      join(env.ORCHARD_HOME, "orchard.db"),
      String(port),
    ],
    { encoding: "utf8" },
  );
  assert.equal(set.status, 0, set.stderr);

  [xvfb, display] = await startXvfb();
  const driverPort = await freePort();
  const nativePort = await freePort();
  driverProcess = new Child(
    "dbus-run-session",
    [
      "--",
      TAURI_DRIVER,
      "--port",
      String(driverPort),
      "--native-port",
      String(nativePort),
      "--native-driver",
      NATIVE_DRIVER,
    ],
    {
      name: "tauri-driver",
      env: {
        ...env,
        DISPLAY: display,
        NO_AT_BRIDGE: "1",
        // No GPU under Xvfb: keep WebKit on its software paths.
        WEBKIT_DISABLE_DMABUF_RENDERER: "1",
        LIBGL_ALWAYS_SOFTWARE: "1",
        RUST_LOG: "info",
      },
    },
  );
  driver = new WebDriver(`http://127.0.0.1:${driverPort}`);
  await waitFor("tauri-driver to listen", () => fetch(`${driver.baseUrl}/status`).then((r) => r.ok), {
    timeoutMs: 30_000,
  });
  await driver.start(DESKTOP);
});

after(async () => {
  if (driver) {
    // What the window showed last, for a failure's report (the last step quits the app).
    if (!passed.has(QUIT)) await shot("app-last.png").catch(() => {});
    await driver.quit();
  }
  if (driverProcess) {
    await driverProcess.stop(5_000);
    saveLog("app-tauri-driver.log", driverProcess.output);
  }
  await xvfb?.stop(5_000);
  await hub?.close();
});

const { step, passed } = ordered({
  unavailable: notLinux,
  onFailure: (slug) => shot(`failed-app-${slug}.png`),
});

/**
 * Calls a Tauri command from the page, as the UI does; resolves with { value } or, when the
 * command fails, { failure } (not `error`, which a WebDriver answer uses for its own failures).
 */
function invoke(command, args) {
  return driver.executeAsync(
    `const done = arguments[arguments.length - 1];
     window.__TAURI_INTERNALS__.invoke(arguments[0], arguments[1]).then((value) => done({ value }), (failure) => done({ failure }));`,
    [command, args ?? {}],
  );
}

/**
 * Saves the app's window as the X server shows it (xdotool finds it, ImageMagick's
 * `import` takes it): WebKitWebDriver's own screenshot command can hang under Xvfb.
 */
async function shot(name) {
  // Let WebKit paint the last change first.
  await sleep(300);
  const run = (command, args) => {
    const done = spawnSync(command, args, {
      env: { ...process.env, DISPLAY: display },
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(done.status, 0, `${command} ${args.join(" ")}: ${done.stderr}`);
    return done.stdout;
  };
  const window = run("xdotool", ["search", "--onlyvisible", "--name", "^Orchard$"]).trim().split("\n")[0];
  run("import", ["-window", window, screenshotPath(name)]);
}

/** The Library's entry for `repo` (a listitem named by it, in the list named "Library"). */
async function libraryEntry(repo) {
  const list = await driver.getByRole("list", "Library");
  return (await driver.findAllByRole("listitem", repoPattern(repo), list))[0];
}

/** The model as the API the app hosts reports it (the same Orchard the window's commands use). */
async function hostedLibraryModel(repo) {
  const library = await api(`http://127.0.0.1:${port}`, key, "/api/library");
  return library.find((m) => repoPattern(repo).test(m.id));
}

const OPENS = "the window opens on the Models screen with the Hub's models";
const MENUBAR = "the menubar menu lists the loaded model, and its Unload item unloads it";
const QUIT = "Quit in the menubar menu lets a running stream finish, then the app exits";
const LIBRARY = "the Library lists the model in the Hugging Face cache";
const LOAD = "Load goes through the app's IPC and the model reports loaded";

step(OPENS, [], async () => {
  assert.equal(await waitFor("the window's title", () => driver.title(), { timeoutMs: 60_000 }), "Orchard");
  const nav = await waitFor("the main navigation", async () => (await driver.findAllByRole("navigation", "Main"))[0], {
    timeoutMs: 60_000,
  });
  const models = await driver.getByRole("link", "Models", nav);
  assert.equal(await driver.attribute(models, "aria-current"), "page", "Models is the current screen");
  // The page talks to Rust over IPC here, not HTTP: it is the Tauri window.
  assert.equal(await driver.execute("return typeof window.__TAURI_INTERNALS__?.invoke"), "function");
  // No API key prompt in the app: its commands need none.
  assert.equal((await driver.findAllByRole("textbox", "API key")).length, 0);
  // Discover lists the (fake) Hub's models, searched through the app's commands.
  await waitFor(
    "the Hub's models in Discover",
    async () => {
      const results = (await driver.findAllByRole("list", "Search results"))[0];
      return results && (await driver.findAllByRole("listitem", repoPattern(MODEL_REPO), results)).length === 1;
    },
    { timeoutMs: 30_000 },
  );
  assert.ok(
    hub.stats.requests.some((r) => r.path.startsWith("/api/models?")),
    "the app asked the Hub at HF_ENDPOINT",
  );
  await shot("app-models.png");
});

step(LIBRARY, [OPENS], async () => {
  await driver.click(await driver.getByRole("tab", "Library"));
  const entry = await waitFor("the fixture in the Library", () => libraryEntry(MODEL_REPO), { timeoutMs: 30_000 });
  assert.match(await driver.text(entry), /\d+(\.\d)? MB on disk/);
  const listed = await invoke("list_library");
  assert.ok(
    listed.value?.some((m) => repoPattern(MODEL_REPO).test(m.id)),
    JSON.stringify(listed),
  );
  await shot("app-library.png");
});

step(LOAD, [LIBRARY], async () => {
  await driver.click(await driver.getByRole("button", "Load", await libraryEntry(MODEL_REPO)));
  await waitFor(
    "the model to report loaded",
    async () => (await driver.findAllByRole("button", "Unload", await libraryEntry(MODEL_REPO))).length === 1,
    { timeoutMs: 90_000 },
  );
  const listed = await invoke("list_library");
  const model = listed.value?.find((m) => repoPattern(MODEL_REPO).test(m.id));
  assert.equal(model?.loaded, true, JSON.stringify(listed));
  assert.ok(model.memory_bytes > 0, "it holds memory while loaded");
  // The API the app hosts serves the same loaded model.
  assert.equal((await hostedLibraryModel(MODEL_REPO))?.loaded, true);
  await shot("app-loaded.png");

  await driver.click(await driver.getByRole("button", "Unload", await libraryEntry(MODEL_REPO)));
  await waitFor(
    "the model to report unloaded",
    async () => (await driver.findAllByRole("button", "Load", await libraryEntry(MODEL_REPO))).length === 1,
    { timeoutMs: 30_000 },
  );
  assert.equal((await invoke("list_library")).value?.find((m) => repoPattern(MODEL_REPO).test(m.id))?.loaded, false);
  assert.equal((await hostedLibraryModel(MODEL_REPO))?.loaded, false);
});

/** The menubar menu as the tray icon holds it now: [{ id, label, enabled }]. */
async function menubar() {
  const menu = await invoke("menubar");
  assert.ok(Array.isArray(menu.value), JSON.stringify(menu));
  return menu.value;
}

/** The library id of the fixture, as the app names it. */
async function fixtureId() {
  const listed = await invoke("list_library");
  const model = listed.value?.find((m) => repoPattern(MODEL_REPO).test(m.id));
  assert.ok(model, JSON.stringify(listed));
  return model.id;
}

step(MENUBAR, [LOAD], async () => {
  const id = await fixtureId();
  const before = await waitFor(
    "the menu to say no model is loaded",
    async () => {
      const menu = await menubar();
      return menu.some((e) => e.label === "No model loaded") && menu;
    },
    { timeoutMs: 15_000 },
  );
  assert.deepEqual(before[0], {
    id: "copy-address",
    label: `Serving at http://127.0.0.1:${port} (click to copy)`,
    enabled: true,
  });
  assert.deepEqual(
    before.filter((e) => e.enabled).map((e) => e.label),
    [`Serving at http://127.0.0.1:${port} (click to copy)`, "Open Orchard", "Settings…", "Quit Orchard"],
  );

  const loaded = await invoke("load_model", { input: { model: id } });
  assert.equal(loaded.failure, undefined, JSON.stringify(loaded));
  // The menu catches up within its refresh (2 s).
  const menu = await waitFor(
    "the menu to list the model",
    async () => {
      const now = await menubar();
      return now.some((e) => e.id === `unload:${id}`) && now;
    },
    { timeoutMs: 15_000 },
  );
  const line = menu.find((e) => e.id === `model:${id}`);
  assert.ok(line, JSON.stringify(menu));
  assert.ok(line.label.startsWith(`${id} · `), line.label);
  assert.match(line.label, / · \d+\.\d MB$/, "with the memory it holds");
  const unload = menu.find((e) => e.id === `unload:${id}`);
  assert.deepEqual(unload, { id: `unload:${id}`, label: `Unload ${id}`, enabled: true });

  // Choosing it does what a click does: the model unloads, and the menu says so.
  const chosen = await invoke("menubar_select", { id: unload.id });
  assert.equal(chosen.failure, undefined, JSON.stringify(chosen));
  await waitFor("the model to unload", async () => (await hostedLibraryModel(MODEL_REPO))?.loaded === false, {
    timeoutMs: 30_000,
  });
  await waitFor(
    "the menu to say no model is loaded again",
    async () => (await menubar()).some((e) => e.label === "No model loaded"),
    { timeoutMs: 15_000 },
  );
  // Only an item the menu shows now can be chosen.
  const refused = await invoke("menubar_select", { id: unload.id });
  assert.equal(refused.failure?.code, "not_found", JSON.stringify(refused));
});

step(QUIT, [MENUBAR], async () => {
  const id = await fixtureId();
  const response = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      model: id,
      messages: [{ role: "user", content: "Count from one to twenty." }],
      max_tokens: 40,
      temperature: 0,
      stream: true,
    }),
  });
  assert.equal(response.status, 200);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let received = "";
  const read = async () => {
    const { done, value } = await reader.read();
    if (!done) received += decoder.decode(value, { stream: true });
    return done;
  };
  // Once text flows, choose Quit.
  while (!received.includes('"content":"')) {
    assert.equal(await read(), false, `the stream ended before any text: ${received}`);
  }
  // The app may be gone before it answers.
  const chosen = invoke("menubar_select", { id: "quit" }).catch((error) => ({ failure: String(error) }));
  // The server stops taking requests at once...
  await waitFor(
    "the port to refuse a new request",
    () =>
      fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { Authorization: `Bearer ${key}` } }).then(
        (r) => r.status === 503,
        () => true,
      ),
    { timeoutMs: 15_000, intervalMs: 100 },
  );
  // ...but the running stream ends whole.
  while (!(await read()));
  assert.match(received, /data: \[DONE\]/, `the stream was cut by Quit: ${received}`);
  // Then the app is gone: its port closes.
  await waitFor(
    "the app to exit",
    () => fetch(`http://127.0.0.1:${port}/health`).then(
      () => false,
      () => true,
    ),
    { timeoutMs: 60_000 },
  );
  await Promise.race([chosen, sleep(1_000)]);
});
