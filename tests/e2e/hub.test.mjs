// The fake Hub answers Orchard's real Hub client as the Hugging Face Hub does:
// `orchard models search/info/download` against it, with nothing faked on
// Orchard's side. The browser and app tests stand on this.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { GATED_REPO, MODEL_REPO, startFakeHub } from "./fake-hub.mjs";
import { FIXTURE, ORCHARD, need, orchardEnv, tempDir } from "./harness.mjs";

let hub;
let env;

before(async () => {
  need(FIXTURE, "run `make setup`");
  need(ORCHARD, "build it with `cargo build --bin orchard`");
  hub = await startFakeHub({ fixture: FIXTURE });
  env = orchardEnv(tempDir("orchard-e2e-hub-"), hub.url);
});

after(async () => {
  await hub?.close();
});

/** Runs `orchard ARGS`; resolves with its exit code and output (no shell, no blocking of the fake Hub's event loop). */
function orchard(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(ORCHARD, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const sha256 = (path) => createHash("sha256").update(readFileSync(path)).digest("hex");

test("search finds the fake Hub's models by name and author, as on the Hub", async () => {
  const found = await orchard(["models", "search", "SmolLM2", "--json"]);
  assert.equal(found.code, 0, found.stderr);
  const ids = JSON.parse(found.stdout).models.map((m) => m.id);
  assert.deepEqual(ids, [MODEL_REPO, GATED_REPO], "mlx-community's SmolLM2 repos, most downloaded first");

  const everyone = await orchard(["models", "search", "SmolLM2", "--author", "", "--json"]);
  assert.equal(everyone.code, 0, everyone.stderr);
  assert.ok(
    JSON.parse(everyone.stdout).models.some((m) => m.id === "HuggingFaceTB/SmolLM2-135M-Instruct"),
    everyone.stdout,
  );
});

test("details of the gated repo say it is gated; its files need a token", async () => {
  const info = await orchard(["models", "info", GATED_REPO, "--json"]);
  // Reading its capabilities needs config.json, which the Hub refuses without a token.
  const text = info.stdout + info.stderr;
  if (info.code === 0) {
    assert.equal(JSON.parse(info.stdout).info.gated, true, text);
  } else {
    assert.match(text, /token/i, text);
  }
  const download = await orchard(["models", "download", GATED_REPO]);
  assert.notEqual(download.code, 0, "a gated download without a token must fail");
  assert.match(download.stdout + download.stderr, /token/i);
});

test("a download through the fake Hub and its CDN gives the fixture's exact files", async () => {
  const done = await orchard(["models", "download", MODEL_REPO, "--json"]);
  assert.equal(done.code, 0, done.stdout + done.stderr);
  const repo = hub.repos.find((r) => r.id === MODEL_REPO);
  const snapshot = join(env.HF_HUB_CACHE, `models--${MODEL_REPO.replace("/", "--")}`, "snapshots", repo.sha);
  const names = readdirSync(snapshot).sort();
  const expected = readdirSync(FIXTURE)
    .filter((n) => /\.(json|safetensors|jinja|txt|model|tiktoken)$/.test(n) || n === "README.md")
    .sort();
  assert.deepEqual(
    names.filter((n) => n !== "README.md"),
    expected.filter((n) => n !== "README.md"),
  );
  for (const name of expected) {
    assert.equal(sha256(realpathSync(join(snapshot, name))), sha256(join(FIXTURE, name)), name);
  }
  // The weights came from the CDN, without the token, in one piece.
  const fetches = hub.stats.weightFetches.filter((f) => f.file === "model.safetensors");
  assert.equal(fetches.length, 1, JSON.stringify(fetches));
  assert.equal(fetches[0].authorized, false);
});
