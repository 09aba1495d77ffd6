// The Servers and Settings screens in a real browser (Debian's Chromium, driven
// by playwright-core) against the real `orchard serve` with the real SmolLM2
// fixture: Start, a live tile whose figures follow the requests sent to the
// port, Stop giving the memory back (read from /metrics); a profile whose name
// is a model name on the port; an API key made in Settings, used with the
// official `openai` SDK, and revoked. Elements are found by role and accessible
// name only. Screenshots go to artifacts/screenshots/.
//
// The tests run in order, as one user's visit: a test that needs what an
// earlier one did is skipped when that one failed.

import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import OpenAI from "openai";

import { startFakeHub } from "./fake-hub.mjs";
import {
  FIXTURE,
  api,
  createKey,
  need,
  noBrowser,
  openPage,
  orchardEnv,
  ordered,
  saveLog,
  screenshotPath,
  startServe,
  tempDir,
  waitFor,
} from "./harness.mjs";

const PROFILE = "terse-pirate";
const SYSTEM_PROMPT = "You are a pirate. Answer every question in one short sentence, the way a pirate talks.";
const PROFILE_MAX_TOKENS = 12;
const QUESTION = "What is the capital of France?";

let hub;
let env;
let serve;
let key;
let browser;
let page;
/** The fixture's name in the Library (and so on the port). */
let model;
const pageErrors = [];
/** Orchard's memory before the load, while loaded, and after Stop, from /metrics. */
const memory = {};

before(async () => {
  if (noBrowser) return;
  need(FIXTURE, "run `make setup`");
  // The page opens on Discover, which asks the Hub: a local stand-in answers.
  hub = await startFakeHub({ fixture: FIXTURE });
  env = orchardEnv(tempDir("orchard-e2e-servers-"), hub.url);
  key = createKey(env);
  serve = await startServe(env);
  ({ browser, page } = await openPage({ height: 900, pageErrors }));
});

after(async () => {
  await browser?.close();
  if (Object.keys(memory).length > 0) {
    saveLog("servers-memory.json", `${JSON.stringify(memory, null, 2)}\n`);
  }
  if (serve) {
    const { code } = await serve.stop();
    saveLog("servers-orchard-serve.log", serve.output);
    if (code !== 0) process.exitCode = 1;
  }
  await hub?.close();
});

const { step, passed } = ordered({
  unavailable: noBrowser,
  onFailure: (slug) => page?.screenshot({ path: screenshotPath(`failed-${slug}.png`) }),
});

const nav = (name) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name });
const tile = (id) => page.getByRole("list", { name: "Servers" }).getByRole("listitem", { name: id, exact: true });
const memoryMeter = (id) => tile(id).getByRole("meter", { name: "Memory", exact: true });
const profileItem = (name) =>
  page.getByRole("list", { name: "Profiles" }).getByRole("listitem", { name, exact: true });

async function shot(name) {
  await page.screenshot({ path: screenshotPath(name), fullPage: true });
}

/** The port's Prometheus text as {name: [{labels, value}]}. */
async function metrics() {
  const response = await fetch(`${serve.url}/metrics`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(response.status, 200, "/metrics answers");
  const out = {};
  for (const line of (await response.text()).split("\n")) {
    const match = line.match(/^(\w+)(?:\{(.*)\})? (\S+)$/);
    if (!match) continue;
    const pairs = [...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)];
    const labels = Object.fromEntries(pairs.map((m) => [m[1], m[2]]));
    (out[match[1]] ??= []).push({ labels, value: Number(match[3]) });
  }
  return out;
}

/** Memory figures for `id` as /metrics reports them now. */
async function memoryNow(id) {
  const m = await metrics();
  const one = (name) => m[name]?.[0]?.value ?? null;
  const parts = (m.orchard_model_memory_bytes ?? []).filter((s) => s.labels.model === id);
  return {
    model_parts: Object.fromEntries(parts.map((s) => [s.labels.part, s.value])),
    model_bytes: parts.reduce((sum, s) => sum + s.value, 0),
    model_series: parts.length,
    mlx_active_bytes: one("orchard_mlx_active_memory_bytes"),
    mlx_cache_bytes: one("orchard_mlx_cache_memory_bytes"),
    process_resident_bytes: one("orchard_process_resident_memory_bytes"),
    loaded_models: one("orchard_loaded_models"),
  };
}

/** The tile's decode speed as it shows it ("12 tok/s", "3.4 tok/s"). */
async function shownSpeed(id) {
  const text = await tile(id).innerText();
  const match = text.match(/Speed\s+([\d.]+) tok\/s/);
  assert.ok(match, `the tile shows a speed: ${text}`);
  return Number(match[1]);
}

/** The tile's count of generated tokens ("Generated 72 tokens"). */
async function shownGenerated(id) {
  const match = (await tile(id).innerText()).match(/Generated\s+(\d+) tokens/);
  return match ? Number(match[1]) : null;
}

function client(apiKey) {
  return new OpenAI({ baseURL: `${serve.url}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });
}

/** Picks `id` in the "Model to start" combobox and presses Start. */
async function startFromCombobox(id) {
  const form = page.getByRole("form", { name: "Start a model" });
  const box = form.getByRole("combobox", { name: "Model to start" });
  await box.click();
  await box.fill(id);
  await form
    .getByRole("listbox", { name: "Models in your Library" })
    .getByRole("option", { name: id, exact: true })
    .click();
  assert.equal(await box.inputValue(), id);
  await form.getByRole("button", { name: "Start", exact: true }).click();
}

const KEY = "the page opens with the session's API key";
const ADD = "the fixture is added to the Library with Add folder";
const SERVERS = "Servers: Start shows a live tile, requests move its tokens/s, Stop gives the memory back";
const PROFILE_TEST = "a profile's name is a model name on the port, with its system prompt and max tokens";
const KEYS = "Settings: a new API key works with the openai SDK once, and is refused after Revoke";
const FAILED = "a model that cannot load keeps a tile with the reason, the load's log lines, Retry and Dismiss";

step(KEY, [], async () => {
  await page.goto(`${serve.url}/`);
  await page.getByRole("textbox", { name: "API key" }).fill(key);
  await page.getByRole("button", { name: "Continue" }).click();
  await nav("Servers").waitFor();
});

step(ADD, [KEY], async () => {
  await nav("Models").click();
  await page.getByRole("tab", { name: "Library" }).click();
  await page.getByRole("button", { name: "Add folder" }).first().click();
  const form = page.getByRole("form", { name: "Add a model folder" });
  await form.getByRole("textbox", { name: "Folder path" }).fill(FIXTURE);
  await form.getByRole("button", { name: "Add" }).click();
  const added = await waitFor("the fixture in the Library", async () =>
    (await api(serve.url, key, "/api/library")).find((m) => m.path === FIXTURE),
  );
  model = added.id;
  assert.equal(added.loaded, false, "added, not loaded");
  await page.getByRole("list", { name: "Library" }).getByRole("listitem", { name: model }).waitFor();
});

step(SERVERS, [ADD], async (t) => {
  await nav("Servers").click();
  assert.equal(await nav("Servers").getAttribute("aria-current"), "page");
  // The system strip: the machine's memory as a meter, Orchard's share in figures.
  const strip = page.getByRole("region", { name: "This machine" });
  const systemMeter = strip.getByRole("meter", { name: "System memory" });
  await systemMeter.waitFor();
  assert.ok(Number(await systemMeter.getAttribute("aria-valuenow")) > 0, "the machine's used memory");
  assert.ok(Number(await systemMeter.getAttribute("aria-valuemax")) > 0, "the machine's total memory");
  assert.match(await strip.innerText(), /Orchard[\s\S]*Budget[\s\S]*CPU[\s\S]*Backend/);
  await page.getByText("No model is loaded").waitFor();

  memory.before_load = await memoryNow(model);
  assert.equal(memory.before_load.model_series, 0, "no memory is counted for the model before it loads");
  assert.equal(memory.before_load.loaded_models, 0);

  await startFromCombobox(model);
  await tile(model).waitFor();
  await memoryMeter(model).waitFor({ timeout: 90_000 });
  await tile(model).getByText("Running", { exact: true }).waitFor({ timeout: 90_000 });
  const shownBytes = Number(await memoryMeter(model).getAttribute("aria-valuenow"));
  assert.ok(shownBytes > 0, `the tile's memory meter: ${shownBytes}`);
  memory.loaded = await memoryNow(model);
  assert.equal(memory.loaded.loaded_models, 1);
  assert.ok(memory.loaded.model_parts.weights > 0, JSON.stringify(memory.loaded));
  // The tile shows what /metrics reports (idle, the model's memory stays put).
  await waitFor(
    "the tile's memory to be the one /metrics reports",
    async () => Number(await memoryMeter(model).getAttribute("aria-valuenow")) === memory.loaded.model_bytes,
    { timeoutMs: 5_000 },
  );
  assert.equal(await shownSpeed(model), 0, "no request yet");

  // Requests through the port, from the official SDK, with the session's key;
  // the page is not reloaded: the figures arrive on the pushed events.
  await page.evaluate(() => (window.__sameDocument = true));
  const openai = client(key);
  let generated = 0;
  for (const question of [QUESTION, "Name three colors.", "Count from one to five."]) {
    const answer = await openai.chat.completions.create({
      model,
      messages: [{ role: "user", content: question }],
      max_tokens: 24,
      temperature: 0,
    });
    assert.ok(answer.choices[0].message.content.length > 0, "an answer");
    assert.ok(answer.usage.completion_tokens > 0);
    generated += answer.usage.completion_tokens;
  }
  const speed = await waitFor("the tile's tokens/s to pass 0", async () => {
    const shown = await shownSpeed(model);
    return shown > 0 ? shown : null;
  });
  await waitFor("the tile to count the generated tokens", async () => (await shownGenerated(model)) === generated, {
    timeoutMs: 5_000,
  });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
  memory.after_requests = await memoryNow(model);
  await shot("servers.png");

  await tile(model).getByRole("button", { name: "Stop", exact: true }).click();
  await waitFor("the tile to go", async () => (await tile(model).count()) === 0);
  await page.getByText("No model is loaded").waitFor();
  memory.after_stop = await waitFor("/metrics to count no memory for the model", async () => {
    const now = await memoryNow(model);
    return now.model_bytes === 0 && now.loaded_models === 0 ? now : null;
  });
  // The weights' arrays are freed: MLX holds at least that much less.
  const freed = memory.after_requests.mlx_active_bytes - memory.after_stop.mlx_active_bytes;
  assert.ok(
    freed >= memory.loaded.model_parts.weights * 0.9,
    `MLX's active memory went from ${memory.after_requests.mlx_active_bytes} to ` +
      `${memory.after_stop.mlx_active_bytes} bytes; the weights are ${memory.loaded.model_parts.weights}`,
  );
  const library = await api(serve.url, key, "/api/library");
  assert.equal(library.find((m) => m.id === model)?.loaded, false, "the Library says it is not loaded");

  t.diagnostic(`tokens/s shown: ${speed}; tokens generated: ${generated}`);
  for (const [when, figures] of Object.entries(memory)) t.diagnostic(`memory ${when}: ${JSON.stringify(figures)}`);
});

step(PROFILE_TEST, [SERVERS], async (t) => {
  await nav("Servers").click();
  // The section's own button (an empty list offers a second one).
  await page.getByRole("button", { name: "New profile" }).first().click();
  const dialog = page.getByRole("dialog", { name: "New profile" });
  await dialog.getByRole("textbox", { name: "Name", exact: true }).fill(PROFILE);
  const modelField = dialog.getByRole("combobox", { name: "Model", exact: true });
  // A native select or a combobox that filters as one types: both take the model's name.
  if ((await modelField.evaluate((el) => el.tagName)) === "SELECT") await modelField.selectOption(model);
  else {
    await modelField.fill(model);
    await dialog.getByRole("option", { name: model, exact: true }).click();
  }
  await dialog.getByRole("textbox", { name: "Description" }).fill("SmolLM2, answering as a pirate");
  await dialog.getByRole("textbox", { name: "System prompt" }).fill(SYSTEM_PROMPT);
  await dialog.getByRole("spinbutton", { name: "Temperature" }).fill("0");
  await dialog.getByRole("spinbutton", { name: "Max tokens" }).fill(String(PROFILE_MAX_TOKENS));
  await dialog.getByRole("checkbox", { name: "Keep loaded" }).check();
  await dialog.getByRole("button", { name: "Save profile" }).click();
  await dialog.waitFor({ state: "detached" });

  await profileItem(PROFILE).waitFor();
  const stored = (await api(serve.url, key, "/api/profiles")).find((p) => p.name === PROFILE);
  assert.deepEqual(
    {
      model: stored?.model,
      system_prompt: stored?.system_prompt,
      max_tokens: stored?.max_tokens,
      temperature: stored?.temperature,
      keep_loaded: stored?.keep_loaded,
    },
    { model, system_prompt: SYSTEM_PROMPT, max_tokens: PROFILE_MAX_TOKENS, temperature: 0, keep_loaded: true },
    "stored as the form said",
  );

  await profileItem(PROFILE).getByRole("button", { name: "Start", exact: true }).click();
  await tile(model).getByText("Running", { exact: true }).waitFor({ timeout: 90_000 });
  // The tile names the profile that serves its model.
  await tile(model).getByText(PROFILE).first().waitFor();

  const openai = client(key);
  const listed = (await openai.models.list()).data.map((m) => m.id);
  assert.ok(listed.includes(PROFILE), `/v1/models lists the profile: ${listed}`);

  const asked = [{ role: "user", content: QUESTION }];
  const viaProfile = await openai.chat.completions.create({
    model: PROFILE,
    messages: asked,
    max_tokens: 16,
    temperature: 0,
  });
  const writtenOut = await openai.chat.completions.create({
    model,
    messages: [{ role: "system", content: SYSTEM_PROMPT }, ...asked],
    max_tokens: 16,
    temperature: 0,
  });
  const bare = await openai.chat.completions.create({ model, messages: asked, max_tokens: 16, temperature: 0 });
  assert.equal(
    viaProfile.usage.prompt_tokens,
    writtenOut.usage.prompt_tokens,
    "the profile's request is prompted with its system prompt",
  );
  assert.notEqual(viaProfile.usage.prompt_tokens, bare.usage.prompt_tokens, "which the bare request is not");
  assert.equal(viaProfile.choices[0].message.content, writtenOut.choices[0].message.content, "and answers alike");

  // A request that sets no max_tokens gets the profile's.
  const unbounded = await openai.chat.completions.create({
    model: PROFILE,
    messages: [{ role: "user", content: "Tell me a long story about the sea." }],
  });
  assert.ok(
    unbounded.usage.completion_tokens <= PROFILE_MAX_TOKENS,
    `at most ${PROFILE_MAX_TOKENS} tokens, got ${unbounded.usage.completion_tokens}`,
  );
  // The tile counts what the profile's requests generated, and none is running now.
  await waitFor(
    "the tile to count the profile's tokens, with no request running",
    async () => (await shownGenerated(model)) > 0 && /0 running, 0 queued/.test(await tile(model).innerText()),
  );
  await shot("profile.png");
  t.diagnostic(
    `prompt tokens: profile ${viaProfile.usage.prompt_tokens}, ` +
      `system written out ${writtenOut.usage.prompt_tokens}, none ${bare.usage.prompt_tokens}`,
  );
});

step(KEYS, [ADD], async () => {
  await nav("Settings").click();
  const keys = page.getByRole("region", { name: "API keys" });
  const name = "sdk-e2e";
  await keys.getByRole("textbox", { name: "Key name" }).fill(name);
  await keys.getByRole("button", { name: "Create key" }).click();
  const secretField = keys.getByRole("textbox", { name: "New API key" });
  await secretField.waitFor();
  assert.equal(await secretField.getAttribute("readonly"), "", "the new key's field is read-only");
  const secret = await secretField.inputValue();
  assert.ok(secret.length >= 20 && secret !== key, "a new secret");
  const entry = keys.getByRole("list", { name: "API keys" }).getByRole("listitem", { name, exact: true });
  await entry.waitFor();
  assert.ok(!(await entry.innerText()).includes(secret), "the list shows no secret");
  await secretField.scrollIntoViewIfNeeded();
  await shot("settings.png");

  // The official SDK with the new key.
  const listed = (await client(secret).models.list()).data.map((m) => m.id);
  assert.ok(listed.includes(model), `the new key lists the models: ${listed}`);

  // Shown once: leaving Settings forgets it.
  await nav("Servers").click();
  await nav("Settings").click();
  await keys.getByRole("textbox", { name: "Key name" }).waitFor();
  assert.equal(await keys.getByRole("textbox", { name: "New API key" }).count(), 0, "the secret is not shown again");
  assert.ok(!(await page.content()).includes(secret), "nor anywhere in the page");

  await entry.getByRole("button", { name: "Revoke", exact: true }).click();
  await entry.getByRole("button", { name: `Revoke ${name}` }).click();
  await entry.getByText("Revoked", { exact: true }).waitFor();
  await assert.rejects(client(secret).models.list(), (error) => {
    assert.ok(error instanceof OpenAI.AuthenticationError, `${error?.constructor?.name}: ${error?.message}`);
    assert.equal(error.status, 401);
    return true;
  });
  // The session's key still works.
  assert.ok((await client(key).models.list()).data.some((m) => m.id === model), "the session's key still works");
});

step(FAILED, [KEY], async () => {
  // The fixture with its weights cut short: the Library lists it, the load fails.
  const broken = join(tempDir("orchard-e2e-broken-"), "SmolLM2-cut-short");
  mkdirSync(broken);
  for (const file of ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
    copyFileSync(join(FIXTURE, file), join(broken, file));
  }
  const weights = readFileSync(join(FIXTURE, "model.safetensors"));
  writeFileSync(join(broken, "model.safetensors"), weights.subarray(0, weights.length / 2));
  const { id } = await api(serve.url, key, "/api/library/add_folder", { path: broken });

  await nav("Servers").click();
  await startFromCombobox(id);
  const failed = tile(id);
  await failed.getByText("Failed", { exact: true }).waitFor({ timeout: 60_000 });
  const reason = await failed.getByRole("alert").innerText();
  assert.match(reason, /safetensors/i, "the reason names what is wrong");
  // The log lines of the load, folded under the reason: where it loaded from, then why it failed.
  await failed.getByText(/^Log of the load \(\d+ lines?\)$/).click();
  const log = await failed.getByRole("log", { name: `Log of the load of ${id}` }).innerText();
  assert.match(log, /INFO loading dir=\S*SmolLM2-cut-short/, log);
  assert.match(log, /WARN the load failed error=.*safetensors/i, log);
  await shot("servers-failed.png");

  // Retry loads again (and fails the same way); Dismiss removes the tile.
  await failed.getByRole("button", { name: "Retry", exact: true }).click();
  await failed.getByText("Failed", { exact: true }).waitFor({ timeout: 60_000 });
  await failed.getByRole("button", { name: "Dismiss", exact: true }).click();
  await waitFor("the failed tile to go", async () => (await failed.count()) === 0);
  const servers = await api(serve.url, key, "/api/servers");
  assert.ok(!servers.servers.some((t) => t.model === id), JSON.stringify(servers.servers));
});

test("the page threw no uncaught errors", { skip: noBrowser ?? false }, () => {
  assert.deepEqual(pageErrors, []);
});
