// What the e2e tests share: where things are, temporary homes, the real
// `orchard` binaries, and waiting for things to happen.

import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

import { chromium } from "playwright-core";

import { gitSha1 } from "./fake-hub.mjs";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const FIXTURE = join(ROOT, ".deps/models/SmolLM2-135M-Instruct-4bit");
export const ORCHARD = process.env.ORCHARD_BIN ?? join(ROOT, "target/debug/orchard");
export const DESKTOP = process.env.ORCHARD_DESKTOP_BIN ?? join(ROOT, "target/debug/orchard-desktop");
export const ARTIFACTS = join(ROOT, "artifacts");
export const SCREENSHOTS = join(ARTIFACTS, "screenshots");

// Stopped from outside (Ctrl-C, `timeout`): exit, so that the exit handlers
// below remove temporary folders and stop every process the tests started.
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
])
  process.once(signal, () => process.exit(code));

/** Fails with what to do when something the tests need was not built or installed. */
export function need(path, fix) {
  if (!existsSync(path)) throw new Error(`${path} is missing: ${fix}`);
  return path;
}

/** A fresh temporary folder, removed when the process exits (kept with E2E_KEEP=1). */
export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (!process.env.E2E_KEEP) process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The environment for Orchard in `home`: its data directory, a Hugging Face
 * cache of its own, and the Hub at `hubUrl`. No token from the developer's
 * own environment leaks in.
 */
export function orchardEnv(home, hubUrl) {
  const env = { ...process.env };
  for (const name of ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "ORCHARD_BIN"]) delete env[name];
  return {
    ...env,
    ORCHARD_HOME: join(home, "orchard"),
    HF_HOME: join(home, "hf"),
    HF_HUB_CACHE: join(home, "hf", "hub"),
    ...(hubUrl ? { HF_ENDPOINT: hubUrl } : {}),
    RUST_LOG: process.env.RUST_LOG ?? "warn",
  };
}

/** Makes an API key with `orchard keys create`, as a user would, and returns it. */
export function createKey(env, name = "e2e") {
  const done = spawnSync(ORCHARD, ["keys", "create", "--name", name], { env, encoding: "utf8", timeout: 60_000 });
  if (done.status !== 0) throw new Error(`orchard keys create failed (${done.status}): ${done.stderr}`);
  const key = done.stdout.trim();
  if (!key || /\s/.test(key)) throw new Error(`orchard keys create printed no key: ${done.stdout}`);
  return key;
}

/** A TCP port nothing listens on right now. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** A child process whose output is kept, stopped with SIGTERM (then SIGKILL). */
export class Child {
  constructor(command, args, options = {}) {
    this.name = options.name ?? command;
    this.output = "";
    // Its own process group, so that stopping it also stops what it started.
    this.process = spawn(command, args, { ...options, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((resolveExit) =>
      this.process.once("exit", (code, signal) => resolveExit({ code, signal })),
    );
    for (const stream of [this.process.stdout, this.process.stderr]) {
      stream.setEncoding("utf8");
      stream.on("data", (text) => {
        this.output += text;
        // Keep the last megabyte: enough to say what went wrong.
        if (this.output.length > 2 << 20) this.output = this.output.slice(-(1 << 20));
      });
    }
    this.killOnExit = () => this.signal("SIGKILL");
    process.on("exit", this.killOnExit);
  }

  signal(name) {
    try {
      process.kill(-this.process.pid, name);
    } catch {
      // Already gone.
    }
  }

  /** Waits until `pattern` appears in the output; returns the match. */
  async waitForOutput(pattern, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.exited.then(() => (exited = true));
    while (Date.now() < deadline) {
      const match = this.output.match(pattern);
      if (match) return match;
      if (exited) break;
      await sleep(50);
    }
    throw new Error(
      `${this.name} ${exited ? "exited" : "did not print " + pattern} within ${timeoutMs} ms; its output:\n${this.tail()}`,
    );
  }

  tail(chars = 6000) {
    return this.output.slice(-chars);
  }

  /** SIGTERM, and SIGKILL after `graceMs`; returns the exit code and signal. */
  async stop(graceMs = 20_000) {
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
    const result = await this.exited;
    clearTimeout(timer);
    process.off("exit", this.killOnExit);
    return result;
  }
}

/** The real `orchard serve` on a free port; resolves once it serves. */
export async function startServe(env) {
  need(ORCHARD, "build it with `cargo build --bin orchard` (make test-e2e does)");
  const serve = new Child(ORCHARD, ["serve", "--port", "0"], { env, name: "orchard serve" });
  const [, url] = await serve.waitForOutput(/serving on (http:\/\/\S+)\/v1/, 60_000);
  serve.url = url;
  return serve;
}

/** Calls Orchard's management API as the page does; returns the parsed JSON or throws. */
export async function api(baseUrl, key, path, body) {
  const response = await fetch(`${baseUrl}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${path} answered ${response.status}: ${text}`);
  return JSON.parse(text);
}

export function sleep(ms) {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

/** Polls `check` until it returns something truthy; fails after `timeoutMs` saying `what`. */
export async function waitFor(what, check, { timeoutMs = 30_000, intervalMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`,
      );
    await sleep(intervalMs);
  }
}

/** `artifacts/screenshots/NAME`, its folder made. */
export function screenshotPath(name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return join(SCREENSHOTS, name);
}

/** Keeps a child's output in artifacts/e2e/ for after the run. */
export function saveLog(name, text) {
  const dir = join(ARTIFACTS, "e2e");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), text);
}

/** Matches a text that holds `repoId` as a whole (not as part of a longer id). */
export function repoPattern(repoId) {
  const escaped = repoId.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  return new RegExp(`(^|[^\\w/.-])${escaped}(?![\\w.-])`);
}

/**
 * Lays the model folder `source` out in the Hugging Face cache at `cacheRoot`
 * as `repoId` at `commit`, as `huggingface_hub` and Orchard's downloads do:
 * blobs named by their etag (SHA-256 for weights, the git blob hash for the
 * rest), relative links from the snapshot, and refs/main.
 */
export function installInCache(cacheRoot, repoId, source, commit) {
  const folder = join(cacheRoot, `models--${repoId.replace("/", "--")}`);
  const snapshot = join(folder, "snapshots", commit);
  for (const dir of [join(folder, "blobs"), snapshot, join(folder, "refs")]) mkdirSync(dir, { recursive: true });
  writeFileSync(join(folder, "refs", "main"), commit);
  for (const name of readdirSync(source)) {
    const content = readFileSync(join(source, name));
    const etag = name.endsWith(".safetensors") ? createHash("sha256").update(content).digest("hex") : gitSha1(content);
    copyFileSync(join(source, name), join(folder, "blobs", etag));
    symlinkSync(join("..", "..", "blobs", etag), join(snapshot, name));
  }
  return snapshot;
}

/**
 * Tests that run in order, as one user's visit. `step(name, needs, body)` runs `body` as a
 * test unless `unavailable` says why none can run here, or a step named in `needs` did not
 * pass; when `body` fails, `onFailure(slug)` saves what the screen showed (`slug` is the
 * step's name, made safe for a file name). `passed` holds the names of the steps that passed.
 */
export function ordered({ unavailable = null, onFailure = async () => {} } = {}) {
  const passed = new Set();
  function step(name, needs, body) {
    test(name, async (t) => {
      if (unavailable) {
        t.skip(unavailable);
        return;
      }
      const missing = needs.filter((n) => !passed.has(n));
      if (missing.length > 0) {
        t.skip(`needs: ${missing.join(", ")}`);
        return;
      }
      try {
        await body(t);
      } catch (error) {
        await Promise.resolve()
          .then(() => onFailure(name.replace(/[^a-z0-9]+/gi, "-").slice(0, 60)))
          .catch(() => {});
        throw error;
      }
      passed.add(name);
    });
  }
  return { step, passed };
}

/** Debian's chromium (setup installs it); elsewhere CHROMIUM_BIN or Google Chrome. */
export const CHROMIUM = [
  process.env.CHROMIUM_BIN,
  "/usr/bin/chromium",
  "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
].find((path) => path && existsSync(path));

/** Why the browser tests cannot run here (setup installs Chromium on Linux), or null. */
export const noBrowser =
  !CHROMIUM && process.platform !== "linux" ? "no Chromium or Chrome here (set CHROMIUM_BIN)" : null;

/**
 * Headless Chromium with one page of `width` x `height`; the page's uncaught errors go
 * to `pageErrors`. Returns { browser, page }.
 */
export async function openPage({ width = 1280, height, pageErrors }) {
  need(CHROMIUM ?? "/usr/bin/chromium", "install Debian's chromium (`make setup`)");
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on("pageerror", (error) => pageErrors.push(error.message));
  return { browser, page };
}
