// The Models screens in a real browser (Debian's Chromium, driven by
// playwright-core) against the real `orchard serve`, its Hub being the fake
// Hub, which serves the real SmolLM2 files. Elements are found by role and
// accessible name only. Screenshots go to artifacts/screenshots/.
//
// The tests run in order, as one user's visit: a test that needs what an
// earlier one did is skipped when that one failed.

import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import { after, before, test } from "node:test";


import { GATED_REPO, GRANTED_TOKEN, MODEL_REPO, startFakeHub } from "./fake-hub.mjs";
import {
  FIXTURE,
  ROOT,
  api,
  createKey,
  need,
  noBrowser,
  openPage,
  orchardEnv,
  ordered,
  repoPattern,
  saveLog,
  screenshotPath,
  sleep,
  startServe,
  tempDir,
  waitFor,
} from "./harness.mjs";

// A second real model, registered where it is with Add folder.
const LOCAL_MODEL = join(ROOT, ".deps/models/SmolLM2-135M-Instruct-float16");
// The weights are ~115 MB: at this rate the download lasts ~15 s, long enough
// to pause it part-way; once resumed it runs at full speed.
const SLOW_RATE = 8 << 20;

let hub;
let env;
let serve;
let key;
let browser;
let page;
const pageErrors = [];
const dialogs = [];
/** The bar's value when paused, and every value it took after Resume. */
let resumedProgress;

before(async () => {
  if (noBrowser) return;
  need(FIXTURE, "run `make setup`");
  need(LOCAL_MODEL, "run `make setup`");
  hub = await startFakeHub({ fixture: FIXTURE });
  env = orchardEnv(tempDir("orchard-e2e-browser-"), hub.url);
  key = createKey(env);
  serve = await startServe(env);
  ({ browser, page } = await openPage({ height: 800, pageErrors }));
  // Destructive actions confirm inline, never with window.confirm.
  page.on("dialog", (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
});

after(async () => {
  await browser?.close();
  if (serve) {
    const { code } = await serve.stop();
    saveLog("browser-orchard-serve.log", serve.output);
    if (code !== 0) process.exitCode = 1;
  }
  await hub?.close();
});

// What the page showed when a step failed goes to the report.
const { step, passed } = ordered({
  unavailable: noBrowser,
  onFailure: (slug) => page?.screenshot({ path: screenshotPath(`failed-${slug}.png`) }),
});

const KEY = "the page asks for the API key and keeps it for the session only";
const DISCOVER = "Discover lists the Hub's models and searches them by name";
const DETAILS = "a model's details show its files, size and license";
const GATED = "a gated model says it needs a Hugging Face token";
const DOWNLOAD = "a download shows progress, pauses, resumes where it stopped and reaches 100%";
const STEADY = "a resumed download's bar never goes back below where it paused";
const LIBRARY = "the downloaded model is in the Library";
const ADD_FOLDER = "Add folder registers a model folder from disk";
const LOAD = "Load and Unload load the model and free it";
const DELETE = "Delete asks first, then removes the model and its files";
const REMOVE = "Remove takes an added folder off the Library and leaves its files";
const AGAIN = "after Delete, Discover offers the model for download again";
const TOKEN = "a token saved in Settings opens the gated model";
const CANCEL = "Cancel asks first, then stops the download and removes its partial files";

const searchBox = () => page.getByRole("searchbox", { name: "Search models" });
/** A list (by its name) and its item named by `repo`. */
const item = (list, repo) => page.getByRole("list", { name: list }).getByRole("listitem", { name: repoPattern(repo) });
const result = (repo) => item("Search results", repo);
const tile = (repo) => item("Downloads", repo);
const entry = (repo) => item("Library", repo);
const tab = (name) => page.getByRole("tab", { name });
const nav = (name) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name });

async function shot(name) {
  await page.screenshot({ path: screenshotPath(name) });
}

/** Searches Discover for `text`. */
async function search(text) {
  await nav("Models").click();
  await tab("Discover").click();
  await searchBox().fill(text);
  await searchBox().press("Enter");
}

/** Opens the details of `repo` from its search result; returns the dialog. */
async function openDetails(repo) {
  await search(repo.split("/")[1]);
  await result(repo).getByRole("button", { name: "Details" }).click();
  const details = page.getByRole("dialog", { name: repoPattern(repo) });
  await details.waitFor();
  return details;
}

async function closeDetails(details) {
  await details.getByRole("button", { name: "Close" }).click();
  await details.waitFor({ state: "detached" });
}

step(KEY, [], async () => {
  await page.goto(`${serve.url}/`);
  const field = page.getByRole("textbox", { name: "API key" });
  await field.fill("orch-not-a-key");
  await page.getByRole("button", { name: "Continue" }).click();
  // A refused key: the page says so and asks again.
  await page
    .getByRole("alert")
    .filter({ hasText: /not accepted/ })
    .waitFor();
  await field.waitFor();
  await shot("api-key.png");

  await field.fill(key);
  await page.getByRole("button", { name: "Continue" }).click();
  await nav("Models").waitFor();
  assert.equal(await nav("Models").getAttribute("aria-current"), "page", "the page opens on Models");
  await tab("Discover").waitFor();
  const storage = await page.evaluate(() => ({
    session: Object.values(sessionStorage),
    local: Object.values(localStorage),
    cookie: document.cookie,
  }));
  assert.ok(storage.session.includes(key), "the key is kept in sessionStorage");
  assert.ok(
    !storage.local.some((v) => v.includes(key)) && !storage.cookie.includes(key),
    "and nowhere that outlives the session",
  );
  assert.ok(!page.url().includes(key), "never in the URL");
});

step(DISCOVER, [KEY], async () => {
  await tab("Discover").click();
  // The default listing: mlx-community's models, most downloaded first.
  for (const repo of [MODEL_REPO, GATED_REPO, "mlx-community/Qwen3-0.6B-4bit", "mlx-community/gemma-3-27b-it-4bit"]) {
    await result(repo).waitFor();
  }
  assert.equal(await result("HuggingFaceTB/SmolLM2-135M-Instruct").count(), 0, "only mlx-community's by default");
  await shot("discover.png");

  await search("SmolLM2");
  await waitFor(
    "the search to leave only SmolLM2 repos",
    async () => (await result("mlx-community/Qwen3-0.6B-4bit").count()) === 0,
  );
  await result(MODEL_REPO).waitFor();
  await result(GATED_REPO).waitFor();
  // What a result says about the model: its size on the Hub, one decimal.
  const text = await result(MODEL_REPO).innerText();
  assert.match(text, /\d+(\.\d)?\s?MB/, text);
  // The Hub was asked with the words typed (not filtered in the page alone).
  assert.ok(
    hub.stats.requests.some((r) => r.path.startsWith("/api/models?") && r.path.includes("search=SmolLM2")),
    "the Hub was searched",
  );
});

step(DETAILS, [DISCOVER], async () => {
  const details = await openDetails(MODEL_REPO);
  const files = details.getByRole("list", { name: "Files" });
  for (const name of ["model.safetensors", "config.json", "tokenizer.json", "README.md"]) {
    await files.getByRole("listitem").filter({ hasText: name }).first().waitFor();
  }
  const text = await details.innerText();
  assert.match(text, /apache-2\.0/, text);
  assert.match(text, /\d+(\.\d)?\s?MB/, text);
  await details.getByRole("button", { name: "Download" }).waitFor();
  await shot("details.png");
  await closeDetails(details);
});

step(GATED, [DISCOVER], async () => {
  const details = await openDetails(GATED_REPO);
  // The hint names the token and leads to Settings, where it is set.
  await details.getByText(/token/i).first().waitFor();
  const settings = details.getByRole("button", { name: "Open Settings" }).first();
  await settings.waitFor();
  await shot("gated.png");
  await settings.click();
  await details.waitFor({ state: "detached" });
  assert.equal(await nav("Settings").getAttribute("aria-current"), "page", "the hint leads to Settings");
});

step(DOWNLOAD, [DETAILS], async () => {
  hub.setRate(SLOW_RATE);
  // Every value the progress bars take, seen by the page itself, so that a
  // bar that reaches 100% and then gives way to "Downloaded" is still seen.
  await page.evaluate(() => {
    window.__progressSeen = [];
    const record = () => {
      for (const bar of document.querySelectorAll('[role="progressbar"]')) {
        window.__progressSeen.push(
          Number(bar.getAttribute("aria-valuenow")) / Number(bar.getAttribute("aria-valuemax")),
        );
      }
    };
    new MutationObserver(record).observe(document.body, {
      subtree: true,
      childList: true,
      attributes: true,
      attributeFilter: ["aria-valuenow"],
    });
  });
  const details = await openDetails(MODEL_REPO);
  await details.getByRole("button", { name: "Download" }).click();
  await details.getByText(/Downloading/).waitFor();
  await closeDetails(details);

  // Running: the bar moves.
  const bar = tile(MODEL_REPO).getByRole("progressbar");
  const fraction = async () =>
    Number(await bar.getAttribute("aria-valuenow")) / Number(await bar.getAttribute("aria-valuemax"));
  await waitFor("the download to pass 10%", async () => (await fraction()) > 0.1, { timeoutMs: 30_000 });
  await shot("download.png");

  await tile(MODEL_REPO).getByRole("button", { name: "Pause" }).click();
  await tile(MODEL_REPO).getByRole("button", { name: "Resume" }).waitFor();
  const weights = () => hub.stats.weightFetches.filter((f) => f.file === "model.safetensors");
  await waitFor(
    "the paused download to hang up on the CDN",
    () => weights().length > 0 && weights().every((f) => f.ended),
  );
  const pausedAt = await bar.getAttribute("aria-valuenow");
  const fetchesWhenPaused = weights().length;
  assert.ok(Number(pausedAt) < 100, `paused part-way, at ${pausedAt}%`);
  await sleep(1500);
  assert.equal(await bar.getAttribute("aria-valuenow"), pausedAt, "a paused download stands still");
  assert.equal(weights().length, fetchesWhenPaused, "and fetches nothing");

  const seenBeforeResume = await page.evaluate(() => window.__progressSeen.length);
  await tile(MODEL_REPO).getByRole("button", { name: "Resume" }).click();
  // Resumed from the bytes on disk: a Range request for the rest, not the file again.
  const resumed = await waitFor("the resumed download to ask the CDN for the rest", () =>
    weights()
      .slice(fetchesWhenPaused)
      .find((f) => f.start > 0),
  );
  const sentBefore = weights()
    .slice(0, fetchesWhenPaused)
    .reduce((sum, f) => sum + f.sent, 0);
  assert.ok(resumed.start <= sentBefore, `resumed at byte ${resumed.start}, after ${sentBefore} were sent`);
  assert.equal(
    weights()
      .slice(fetchesWhenPaused)
      .filter((f) => f.start === 0).length,
    0,
    "the weights were not fetched again from the start",
  );
  hub.setRate(0);
  await waitFor(
    "the download to reach 100%",
    async () => (await page.evaluate(() => window.__progressSeen)).some((v) => v >= 1),
    { timeoutMs: 60_000 },
  );
  resumedProgress = {
    pausedAt: Number(pausedAt) / 100,
    after: (await page.evaluate(() => window.__progressSeen)).slice(seenBeforeResume),
  };
  await tile(MODEL_REPO)
    .getByText(/in your Library/)
    .waitFor();
  const snapshot = join(env.HF_HUB_CACHE, `models--${MODEL_REPO.replace("/", "--")}`, "snapshots", hub.repos[0].sha);
  assert.ok(existsSync(join(snapshot, "model.safetensors")), "the weights are in the cache's snapshot");
  const downloads = await api(serve.url, key, "/api/downloads");
  const done = downloads.find((d) => d.repo === MODEL_REPO);
  assert.equal(done?.state, "done", JSON.stringify(downloads));
  assert.equal(done.downloaded, done.total);
});

step(STEADY, [DOWNLOAD], () => {
  const { pausedAt, after } = resumedProgress;
  const below = after.filter((v) => v < pausedAt);
  assert.ok(after.length > 0, "the bar moved after Resume");
  assert.deepEqual(
    below.map((v) => `${(v * 100).toFixed(1)}%`),
    [],
    `after Resume the bar went back below its paused ${(pausedAt * 100).toFixed(1)}%`,
  );
});

step(LIBRARY, [DOWNLOAD], async () => {
  await tab("Library").click();
  await entry(MODEL_REPO).waitFor();
  const text = await entry(MODEL_REPO).innerText();
  assert.match(text, /\d+(\.\d)? MB on disk/, text);
  await entry(MODEL_REPO).getByRole("button", { name: "Load" }).waitFor();
});

step(ADD_FOLDER, [LIBRARY], async () => {
  await page.getByRole("button", { name: "Add folder" }).first().click();
  const form = page.getByRole("form", { name: "Add a model folder" });
  await form.getByRole("textbox", { name: "Folder path" }).fill(LOCAL_MODEL);
  await form.getByRole("button", { name: "Add" }).click();
  const local = entry(basename(LOCAL_MODEL));
  await local.waitFor();
  assert.match(await local.innerText(), /local folder/);
  const listed = (await api(serve.url, key, "/api/library")).find((m) => m.source === "local");
  assert.equal(listed?.path, LOCAL_MODEL, "registered where it is, not copied");
  await shot("library.png");
});

step(LOAD, [LIBRARY], async () => {
  const loaded = async () =>
    (await api(serve.url, key, "/api/library")).find((m) => repoPattern(MODEL_REPO).test(m.id))?.loaded;
  await entry(MODEL_REPO).getByRole("button", { name: "Load" }).click();
  await entry(MODEL_REPO).getByRole("button", { name: "Unload" }).waitFor({ timeout: 60_000 });
  await entry(MODEL_REPO).getByText("Loaded", { exact: true }).waitFor();
  assert.equal(await loaded(), true, "the server has it loaded");
  await shot("library-loaded.png");

  await entry(MODEL_REPO).getByRole("button", { name: "Unload" }).click();
  await entry(MODEL_REPO).getByRole("button", { name: "Load" }).waitFor({ timeout: 30_000 });
  assert.equal(await loaded(), false, "and unloaded");
});

step(DELETE, [LIBRARY], async () => {
  const folder = join(env.HF_HUB_CACHE, `models--${MODEL_REPO.replace("/", "--")}`);
  await entry(MODEL_REPO).getByRole("button", { name: "Delete" }).click();
  // Inline confirmation that says what will be freed; nothing is deleted yet.
  const confirm = entry(MODEL_REPO).getByRole("button", { name: /^Delete \d+(\.\d)? MB$/ });
  await confirm.waitFor();
  assert.ok(existsSync(join(folder, "blobs")), "nothing is deleted before it is confirmed");
  await shot("delete-confirm.png");
  await confirm.click();
  await waitFor("the entry to leave the Library", async () => (await entry(MODEL_REPO).count()) === 0);
  assert.ok(
    !existsSync(join(folder, "snapshots", hub.repos[0].sha, "model.safetensors")),
    "the weights are gone from the cache",
  );
  const library = await api(serve.url, key, "/api/library");
  assert.ok(!library.some((m) => repoPattern(MODEL_REPO).test(m.id)), JSON.stringify(library));
  assert.deepEqual(dialogs, [], "no window.confirm or alert");
});

step(REMOVE, [ADD_FOLDER], async () => {
  const local = entry(basename(LOCAL_MODEL));
  await local.getByRole("button", { name: "Remove" }).click();
  await local.getByRole("button", { name: "Remove from library" }).click();
  await waitFor("the folder to leave the Library", async () => (await local.count()) === 0);
  const library = await api(serve.url, key, "/api/library");
  assert.ok(!library.some((m) => m.source === "local"), JSON.stringify(library));
  assert.ok(existsSync(join(LOCAL_MODEL, "model.safetensors")), "its files stay where they are");
});

step(AGAIN, [DELETE], async () => {
  // Deleted from the Library, the model is on offer again (not "in your Library").
  await search("SmolLM2-135M-Instruct-4bit");
  await result(MODEL_REPO).getByRole("button", { name: "Download" }).waitFor();
  assert.equal(await page.getByText(/in your Library/).count(), 0, "nothing says it is still in the Library");
});

step(TOKEN, [GATED], async () => {
  await nav("Settings").click();
  await page.getByRole("textbox", { name: "Hugging Face token" }).fill(GRANTED_TOKEN);
  await page.getByRole("button", { name: "Save token" }).click();
  await page.getByText("A token is set.").waitFor();
  // Never shown again, nor kept by the page.
  assert.equal(await page.getByRole("textbox", { name: "Hugging Face token" }).inputValue(), "");
  const storage = await page.evaluate(() => JSON.stringify([sessionStorage, localStorage]));
  assert.ok(!storage.includes(GRANTED_TOKEN), "the page keeps no copy of the token");

  const details = await openDetails(GATED_REPO);
  // Its files can be read now: the model's facts come from its config.
  await details.getByText("Context length").waitFor();
  assert.equal(await details.getByRole("button", { name: "Open Settings" }).count(), 0, "no token hint any more");
  await details.getByRole("button", { name: "Download" }).waitFor();
  await closeDetails(details);
});

step(CANCEL, [TOKEN], async () => {
  hub.setRate(SLOW_RATE);
  const fetchesBefore = hub.stats.weightFetches.length;
  const details = await openDetails(GATED_REPO);
  await details.getByRole("button", { name: "Download" }).click();
  await closeDetails(details);
  const bar = tile(GATED_REPO).getByRole("progressbar");
  await waitFor("the download to pass 5%", async () => Number(await bar.getAttribute("aria-valuenow")) > 5, {
    timeoutMs: 30_000,
  });
  await tile(GATED_REPO).getByRole("button", { name: "Cancel" }).click();
  // Inline confirmation: keeping it is one click, stopping it another.
  await tile(GATED_REPO).getByRole("button", { name: "Keep downloading" }).waitFor();
  await tile(GATED_REPO).getByRole("button", { name: "Cancel download" }).click();
  await waitFor(
    "the download to be cancelled",
    async () => (await api(serve.url, key, "/api/downloads")).find((d) => d.repo === GATED_REPO)?.state === "cancelled",
  );
  await waitFor("its tile to go", async () => (await tile(GATED_REPO).count()) === 0);
  const blobs = join(env.HF_HUB_CACHE, `models--${GATED_REPO.replace("/", "--")}`, "blobs");
  const partials = existsSync(blobs) ? readdirSync(blobs).filter((n) => n.endsWith(".incomplete")) : [];
  assert.deepEqual(partials, [], "its partial files are removed");
  assert.equal(await entry(GATED_REPO).count(), 0, "and it is not in the Library");
  // The token went to the Hub, never to the CDN.
  assert.ok(
    hub.stats.requests.some((r) => r.authorized && r.path.includes("Gated-SmolLM2")),
    "the Hub saw the token",
  );
  const cdn = hub.stats.weightFetches.slice(fetchesBefore);
  assert.ok(cdn.length > 0 && cdn.every((f) => !f.authorized), JSON.stringify(cdn));
  hub.setRate(0);
});

test("the page threw no uncaught errors", { skip: noBrowser ?? false }, () => {
  assert.deepEqual(pageErrors, []);
});
