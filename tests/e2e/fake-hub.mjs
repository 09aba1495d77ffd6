// A stand-in for the Hugging Face Hub with several repos, answering as the
// real Hub answers the requests Orchard's Hub client makes (crates/hub/src):
//
// - GET /api/models: search with `search`, `author`, `filter`, `pipeline_tag`,
//   `sort`, `direction`, `limit` and `expand[]` (when any `expand[]` is given,
//   only `_id`, `id` and the named fields are listed, as the Hub does; an
//   unknown field is a 400);
// - GET /api/models/{org}/{name}[/revision/{rev}][?blobs=true]: details, with
//   `siblings` (sizes, `blobId` and `lfs` only with blobs=true), `sha`,
//   `usedStorage`, `cardData`, `gated`, `config`, `safetensors`;
// - GET/HEAD /{org}/{name}/resolve/{rev}/{file}: a small file is a 307 to a
//   relative /api/resolve-cache/... URL whose answer carries `ETag` (the git
//   blob SHA-1) and `X-Repo-Commit`; an LFS file is a 302 to another origin
//   (the CDN) with `X-Repo-Commit`, `X-Linked-Etag` (its SHA-256) and
//   `X-Linked-Size`. A gated repo answers 401 without a token (403 with a
//   token it does not know), as the Hub does. The CDN honours Range.
//
// The first repo serves a real model folder (the SmolLM2 fixture) so that a
// downloaded model loads; a gated copy of it needs a token; the others are
// listed and described (with small files) but their weights are not served.
//
// The CDN's speed for weights can be limited (bytes per second) and changed
// while a download runs, so that a test can pause it part-way and then let it
// finish quickly. `stats` records every fetch of weights (its Range start and
// whether a token came along), so tests can check that a resumed download
// continued from where it stopped rather than starting again.
//
// Used in-process by the e2e tests (`startFakeHub`), or on its own:
//   node tests/e2e/fake-hub.mjs --fixture .deps/models/SmolLM2-135M-Instruct-4bit [--port 0] [--rate BYTES_PER_S]

import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

/** The repo that serves the real model files. */
export const MODEL_REPO = "mlx-community/SmolLM2-135M-Instruct-4bit";
/** A gated copy of it: details for everyone, files only with a token. */
export const GATED_REPO = "mlx-community/Gated-SmolLM2-135M-Instruct-4bit";
/** The one token the fake Hub grants access to gated files. */
export const GRANTED_TOKEN = "hf_fakeE2eTokenGrantedAccess";

const LFS_EXTENSIONS = [".safetensors", ".bin", ".gguf"];
const CHUNK = 64 << 10;

/** Git's blob hash: SHA-1 of `blob <len>\0` and the content. */
export function gitSha1(content) {
  return createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

function sha256File(path) {
  const hash = createHash("sha256");
  const buffer = Buffer.alloc(1 << 20);
  const fd = openSync(path);
  try {
    let read;
    while ((read = readSync(fd, buffer)) > 0) hash.update(buffer.subarray(0, read));
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

/** The LFS pointer git keeps in place of a large file; the Hub's blobId is its git hash. */
function lfsPointer(sha256, size) {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${size}\n`);
}

function commitOf(repoId) {
  return createHash("sha1").update(`commit of ${repoId}`).digest("hex");
}

const GITATTRIBUTES = Buffer.from(
  ["*.bin", "*.gguf", "*.safetensors", "*.pt"].map((p) => `${p} filter=lfs diff=lfs merge=lfs -text`).join("\n") + "\n",
);

function smallFile(name, content) {
  return { name, size: content.length, content, blobId: gitSha1(content) };
}

/** A weight file the fake lists but does not serve (search-only repos). */
function listedWeights(name, size) {
  const sha256 = createHash("sha256").update(`weights ${name} ${size}`).digest("hex");
  return {
    name,
    size,
    lfs: { sha256, size, pointerSize: lfsPointer(sha256, size).length },
    blobId: gitSha1(lfsPointer(sha256, size)),
  };
}

function modelCard(repoId, license, text) {
  return Buffer.from(
    `---\nlicense: ${license}\nlibrary_name: mlx\npipeline_tag: text-generation\ntags:\n- mlx\n---\n\n# ${repoId}\n\n${text}\n`,
  );
}

/** The files of the fixture folder, with their hashes as the Hub reports them (hashed once per folder). */
const hashedFolders = new Map();
function fixtureFiles(dir, repoId) {
  if (!hashedFolders.has(dir)) hashedFolders.set(dir, folderFiles(dir));
  const files = hashedFolders.get(dir);
  if (files.some((f) => f.name === "README.md")) return files;
  const card = modelCard(
    repoId,
    "apache-2.0",
    "SmolLM2-135M-Instruct quantized to 4 bits for MLX. The weights are the real model's, served by Orchard's fake Hub for its end-to-end tests.",
  );
  return [...files, smallFile("README.md", card)];
}

function folderFiles(dir) {
  const files = [smallFile(".gitattributes", GITATTRIBUTES)];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    const stat = statSync(path);
    if (!stat.isFile()) continue;
    if (LFS_EXTENSIONS.some((ext) => name.endsWith(ext))) {
      const sha256 = sha256File(path);
      const pointer = lfsPointer(sha256, stat.size);
      files.push({
        name,
        size: stat.size,
        path,
        lfs: { sha256, size: stat.size, pointerSize: pointer.length },
        blobId: gitSha1(pointer),
      });
    } else {
      files.push(smallFile(name, readFileSync(path)));
    }
  }
  return files;
}

function readJson(files, name) {
  const file = files.find((f) => f.name === name);
  if (!file?.content) return null;
  try {
    return JSON.parse(file.content.toString("utf8"));
  } catch {
    return null;
  }
}

/** The Hub's digest of config.json in listings: architectures, model_type, quantization and the tokenizer config. */
function configDigest(config, tokenizerConfig) {
  if (!config) return null;
  const digest = { architectures: config.architectures ?? [], model_type: config.model_type };
  const quantization = config.quantization_config ?? config.quantization;
  if (quantization) digest.quantization_config = quantization;
  if (tokenizerConfig) {
    const keep = {};
    for (const key of ["bos_token", "chat_template", "eos_token", "pad_token", "unk_token"]) {
      if (tokenizerConfig[key] !== undefined) keep[key] = tokenizerConfig[key];
    }
    digest.tokenizer_config = keep;
  }
  return digest;
}

const QWEN_TEMPLATE =
  "{%- if tools %}<|im_start|>system\n# Tools\n<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools>\nFor each function call, return a json object within <tool_call></tool_call> XML tags.<|im_end|>\n{%- endif %}" +
  "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endfor %}" +
  "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{%- endif %}{%- endif %}";
const LLAMA_TEMPLATE =
  "{{- bos_token }}{%- for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{%- endfor %}{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}";
const GEMMA_TEMPLATE =
  "{{ bos_token }}{%- for message in messages %}<start_of_turn>{{ message['role'] }}\n{{ message['content'] | trim }}<end_of_turn>\n{%- endfor %}{%- if add_generation_prompt %}<start_of_turn>model\n{%- endif %}";

/** A repo that is listed and described, with real-looking small files, but whose weights are not served. */
function listedRepo({
  id,
  modelType,
  architectures,
  bits,
  params,
  weights,
  template,
  license,
  tags,
  downloads,
  likes,
  lastModified,
  libraryName = "mlx",
  text,
}) {
  const config = { architectures, model_type: modelType, hidden_size: 1024, num_hidden_layers: 28, vocab_size: 151936 };
  if (bits) config.quantization = config.quantization_config = { group_size: 64, bits };
  const tokenizerConfig = { bos_token: null, eos_token: "<|im_end|>", chat_template: template };
  const files = [
    smallFile(".gitattributes", GITATTRIBUTES),
    smallFile("README.md", modelCard(id, license, text)),
    smallFile("config.json", Buffer.from(JSON.stringify(config, null, 2))),
    smallFile("tokenizer_config.json", Buffer.from(JSON.stringify(tokenizerConfig, null, 2))),
    ...weights.map(([name, size]) => listedWeights(name, size)),
  ];
  return {
    id,
    files,
    gated: false,
    servesWeights: false,
    downloads,
    likes,
    lastModified,
    createdAt: "2025-01-10T09:00:00.000Z",
    tags,
    pipeline_tag: "text-generation",
    library_name: libraryName,
    license,
    safetensors: {
      parameters: bits ? { BF16: Math.round(params / 8), U32: Math.round((params * bits) / 32) } : { BF16: params },
      total: params,
    },
    config: configDigest(config, tokenizerConfig),
  };
}

/** The repos the fake Hub serves. */
export function buildRepos(fixtureDir) {
  const served = (id, gated, extra) => {
    const files = fixtureFiles(fixtureDir, id);
    const config = readJson(files, "config.json");
    const tokenizerConfig = readJson(files, "tokenizer_config.json");
    const weights = files.filter((f) => f.lfs).reduce((sum, f) => sum + f.size, 0);
    return {
      id,
      files,
      gated: gated ? "auto" : false,
      servesWeights: true,
      pipeline_tag: "text-generation",
      library_name: "mlx",
      license: "apache-2.0",
      createdAt: "2024-11-01T10:00:00.000Z",
      // 4-bit weights with float32 scales: about 9 bits a parameter on disk.
      safetensors: { parameters: { F32: Math.round(weights / 16), U32: Math.round(weights / 8) }, total: 134515008 },
      config: configDigest(config, tokenizerConfig),
      ...extra,
    };
  };
  const smolTags = [
    "mlx",
    "safetensors",
    "llama",
    "text-generation",
    "conversational",
    "en",
    "4-bit",
    "base_model:HuggingFaceTB/SmolLM2-135M-Instruct",
    "license:apache-2.0",
    "region:us",
  ];
  return [
    served(MODEL_REPO, false, {
      downloads: 48210,
      likes: 12,
      lastModified: "2025-02-20T08:15:00.000Z",
      tags: smolTags,
    }),
    served(GATED_REPO, true, { downloads: 310, likes: 2, lastModified: "2025-03-02T16:40:00.000Z", tags: smolTags }),
    listedRepo({
      id: "mlx-community/Qwen3-0.6B-4bit",
      modelType: "qwen3",
      architectures: ["Qwen3ForCausalLM"],
      bits: 4,
      params: 596049920,
      weights: [["model.safetensors", 335_134_812]],
      template: QWEN_TEMPLATE,
      license: "apache-2.0",
      tags: [
        "mlx",
        "safetensors",
        "qwen3",
        "text-generation",
        "conversational",
        "4-bit",
        "base_model:Qwen/Qwen3-0.6B",
        "license:apache-2.0",
        "region:us",
      ],
      downloads: 251_000,
      likes: 41,
      lastModified: "2025-05-01T12:00:00.000Z",
      text: "Qwen3-0.6B converted to MLX, 4-bit. It thinks in <think> blocks and calls tools.",
    }),
    listedRepo({
      id: "mlx-community/Llama-3.2-3B-Instruct-8bit",
      modelType: "llama",
      architectures: ["LlamaForCausalLM"],
      bits: 8,
      params: 3212749824,
      weights: [["model.safetensors", 3_414_155_621]],
      template: LLAMA_TEMPLATE,
      license: "llama3.2",
      tags: [
        "mlx",
        "safetensors",
        "llama",
        "text-generation",
        "conversational",
        "8-bit",
        "license:llama3.2",
        "region:us",
      ],
      downloads: 98_400,
      likes: 23,
      lastModified: "2024-10-12T07:30:00.000Z",
      text: "Llama 3.2 3B Instruct converted to MLX, 8-bit.",
    }),
    listedRepo({
      id: "mlx-community/gemma-3-27b-it-4bit",
      modelType: "gemma3",
      architectures: ["Gemma3ForConditionalGeneration"],
      bits: 4,
      params: 27432406640,
      weights: [
        ["model-00001-of-00004.safetensors", 5_368_709_120],
        ["model-00002-of-00004.safetensors", 5_368_709_120],
        ["model-00003-of-00004.safetensors", 5_368_709_120],
        ["model-00004-of-00004.safetensors", 1_342_177_280],
      ],
      template: GEMMA_TEMPLATE,
      license: "gemma",
      tags: [
        "mlx",
        "safetensors",
        "gemma3",
        "image-text-to-text",
        "conversational",
        "4-bit",
        "license:gemma",
        "region:us",
      ],
      downloads: 65_200,
      likes: 57,
      lastModified: "2025-03-15T18:00:00.000Z",
      text: "Gemma 3 27B instruction-tuned, converted to MLX, 4-bit.",
    }),
    listedRepo({
      id: "HuggingFaceTB/SmolLM2-135M-Instruct",
      modelType: "llama",
      architectures: ["LlamaForCausalLM"],
      bits: null,
      params: 134515008,
      weights: [["model.safetensors", 269_060_552]],
      template: QWEN_TEMPLATE,
      license: "apache-2.0",
      libraryName: "transformers",
      tags: [
        "transformers",
        "safetensors",
        "llama",
        "text-generation",
        "conversational",
        "en",
        "license:apache-2.0",
        "region:us",
      ],
      downloads: 1_020_000,
      likes: 180,
      lastModified: "2024-11-20T10:00:00.000Z",
      text: "SmolLM2-135M-Instruct in bfloat16, for transformers.",
    }),
  ].map((repo) => ({ ...repo, sha: commitOf(repo.id), usedStorage: repo.files.reduce((sum, f) => sum + f.size, 0) }));
}

// The fields `expand[]` may name on the real Hub (others are a 400 there).
const EXPANDABLE = new Set([
  "author",
  "baseModels",
  "cardData",
  "childrenModelCount",
  "config",
  "createdAt",
  "disabled",
  "downloads",
  "downloadsAllTime",
  "gated",
  "gguf",
  "inference",
  "inferenceProviderMapping",
  "lastModified",
  "library_name",
  "likes",
  "mask_token",
  "model-index",
  "pipeline_tag",
  "private",
  "resourceGroup",
  "safetensors",
  "sha",
  "siblings",
  "spaces",
  "tags",
  "transformersInfo",
  "trendingScore",
  "widgetData",
  "usedStorage",
  "xetEnabled",
]);
// What a listing holds when no `expand[]` is given.
const LISTING_DEFAULT = [
  "likes",
  "trendingScore",
  "private",
  "downloads",
  "tags",
  "pipeline_tag",
  "library_name",
  "createdAt",
];

function field(repo, name, { blobs = false } = {}) {
  switch (name) {
    case "author":
      return repo.id.split("/")[0];
    case "cardData":
      return {
        license: repo.license,
        library_name: repo.library_name,
        pipeline_tag: repo.pipeline_tag,
        tags: [repo.library_name],
      };
    case "trendingScore":
      return Math.round(repo.likes / 2);
    case "private":
    case "disabled":
      return false;
    case "modelId":
      return repo.id;
    case "siblings":
      return repo.files.map((f) =>
        blobs
          ? { rfilename: f.name, blobId: f.blobId, size: f.size, ...(f.lfs ? { lfs: f.lfs } : {}) }
          : { rfilename: f.name },
      );
    case "spaces":
      return [];
    default:
      return repo[name];
  }
}

function listing(repo, expand) {
  const entry = { _id: repo.sha.slice(0, 24), id: repo.id };
  const names = expand.length > 0 ? expand : [...LISTING_DEFAULT, "modelId"];
  for (const name of names) {
    const value = field(repo, name);
    if (value !== undefined) entry[name] = value;
  }
  return entry;
}

function details(repo, blobs) {
  const entry = { _id: repo.sha.slice(0, 24), id: repo.id };
  for (const name of [
    "private",
    "pipeline_tag",
    "library_name",
    "tags",
    "downloads",
    "likes",
    "modelId",
    "author",
    "sha",
    "lastModified",
    "gated",
    "disabled",
    "config",
    "cardData",
    "siblings",
    "spaces",
    "createdAt",
    "safetensors",
    "usedStorage",
  ]) {
    const value = field(repo, name, { blobs });
    if (value !== undefined) entry[name] = value;
  }
  return entry;
}

const SORT_KEYS = {
  downloads: "downloads",
  likes: "likes",
  lastModified: "lastModified",
  trendingScore: "trendingScore",
  createdAt: "createdAt",
};

function search(repos, params) {
  const expand = params.getAll("expand[]");
  const unknown = expand.find((name) => !EXPANDABLE.has(name));
  if (unknown !== undefined) return [400, { error: `"expand" must be one of [${[...EXPANDABLE].join(", ")}]` }];
  const limit = Number(params.get("limit") ?? 1000);
  if (!Number.isInteger(limit) || limit < 1) return [400, { error: '"limit" must be a positive integer' }];
  const sortName = params.get("sort");
  if (sortName !== null && !(sortName in SORT_KEYS))
    return [400, { error: `"sort" must be one of [${Object.keys(SORT_KEYS).join(", ")}]` }];
  const text = params.get("search")?.toLowerCase();
  const author = params.get("author")?.toLowerCase();
  const filters = params.getAll("filter");
  const pipelineTag = params.get("pipeline_tag");
  let found = repos.filter(
    (r) =>
      (!text || r.id.toLowerCase().includes(text)) &&
      (!author || r.id.split("/")[0].toLowerCase() === author) &&
      filters.every((f) => r.tags.includes(f) || r.library_name === f) &&
      (!pipelineTag || r.pipeline_tag === pipelineTag),
  );
  if (sortName) {
    const key = SORT_KEYS[sortName];
    const value = (r) => field(r, key);
    const sign = params.get("direction") === "1" ? 1 : -1;
    found = [...found].sort((a, b) => (value(a) < value(b) ? -sign : value(a) > value(b) ? sign : 0));
  }
  return [200, found.slice(0, limit).map((r) => listing(r, expand))];
}

/**
 * Starts the fake Hub (and its CDN) on 127.0.0.1. `rate`: bytes per second
 * for weights from the CDN, 0 for no limit. Returns { url, cdn, repos, stats,
 * setRate, close }.
 */
export async function startFakeHub({ fixture, port = 0, rate = 0 }) {
  const repos = buildRepos(fixture);
  const byId = new Map(repos.map((r) => [r.id, r]));
  const state = { rate };
  /** Every fetch of an LFS file from the CDN, and every request to the Hub. */
  const stats = { weightFetches: [], requests: [] };
  const open = new Set();

  const send = (res, status, headers, body) => {
    const data =
      body === undefined
        ? Buffer.alloc(0)
        : Buffer.isBuffer(body)
          ? body
          : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
    const head = { "Content-Length": data.length, ...headers };
    if (body !== undefined && !head["Content-Type"])
      head["Content-Type"] =
        typeof body === "object" && !Buffer.isBuffer(body)
          ? "application/json; charset=utf-8"
          : "text/plain; charset=utf-8";
    res.writeHead(status, head);
    res.end(res.req.method === "HEAD" ? undefined : data);
  };
  const notFound = (res, code, message) =>
    send(res, 404, { "X-Error-Code": code, "X-Error-Message": message }, { error: message });

  /** The token check of a gated repo: null when access is granted, else the answer given. */
  const gate = (req, res, repo) => {
    if (!repo.gated) return false;
    const auth = req.headers.authorization ?? "";
    if (auth === `Bearer ${GRANTED_TOKEN}`) return false;
    const message = auth
      ? `Access to model ${repo.id} is restricted and you are not in the authorized list. Visit https://huggingface.co/${repo.id} to ask for access.`
      : `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it. Please log in.`;
    send(res, auth ? 403 : 401, { "X-Error-Code": "GatedRepo", "X-Error-Message": message }, message);
    return true;
  };

  let cdnUrl = "";
  const hub = createServer((req, res) => {
    const url = new URL(req.url, "http://hub");
    const path = decodeURIComponent(url.pathname);
    stats.requests.push({
      method: req.method,
      path: url.pathname + url.search,
      authorized: Boolean(req.headers.authorization),
    });
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, {}, { error: "method not allowed" });

    if (path === "/api/models") {
      const [status, body] = search(repos, url.searchParams);
      return send(res, status, {}, body);
    }
    let m = path.match(/^\/api\/models\/([^/]+\/[^/]+?)(?:\/revision\/([^/]+))?\/?$/);
    if (m) {
      const repo = byId.get(m[1]);
      if (!repo) return notFound(res, "RepoNotFound", "Repository not found");
      const revision = m[2] ?? "main";
      if (revision !== "main" && revision !== repo.sha)
        return notFound(res, "RevisionNotFound", `Invalid rev id: ${revision}`);
      return send(res, 200, {}, details(repo, url.searchParams.get("blobs") === "true"));
    }
    m = path.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    if (m) {
      const [, id, revision, name] = m;
      const repo = byId.get(id);
      if (!repo) return notFound(res, "RepoNotFound", "Repository not found");
      if (revision !== "main" && revision !== repo.sha)
        return notFound(res, "RevisionNotFound", `Invalid rev id: ${revision}`);
      if (gate(req, res, repo)) return;
      const file = repo.files.find((f) => f.name === name);
      if (!file || (file.lfs && !repo.servesWeights))
        return notFound(res, "EntryNotFound", `${name} does not exist on "${revision}"`);
      if (file.lfs) {
        return send(res, 302, {
          Location: `${cdnUrl}/repos/${repo.sha.slice(0, 8)}/${file.lfs.sha256}?response-content-disposition=attachment&X-Fake-Signature=${repo.sha.slice(0, 16)}`,
          "X-Repo-Commit": repo.sha,
          "X-Linked-Etag": `"${file.lfs.sha256}"`,
          "X-Linked-Size": String(file.size),
          ETag: `"${file.blobId}"`,
        });
      }
      const original = encodeURIComponent(`/${id}/resolve/${revision}/${name}`);
      return send(res, 307, {
        Location: `/api/resolve-cache/models/${id}/${repo.sha}/${name.split("/").map(encodeURIComponent).join("/")}?${original}=&etag=%22${file.blobId}%22`,
        "X-Repo-Commit": repo.sha,
      });
    }
    m = path.match(/^\/api\/resolve-cache\/models\/([^/]+\/[^/]+)\/([0-9a-f]{40})\/(.+)$/);
    if (m) {
      const repo = byId.get(m[1]);
      const file = repo?.sha === m[2] ? repo.files.find((f) => f.name === m[3] && !f.lfs) : undefined;
      if (!file) return notFound(res, "EntryNotFound", "Entry not found");
      if (gate(req, res, repo)) return;
      return sendRange(
        req,
        res,
        file.content.length,
        { ETag: `"${file.blobId}"`, "X-Repo-Commit": repo.sha },
        (start) => file.content.subarray(start),
      );
    }
    return notFound(res, "RepoNotFound", "Not found");
  });

  const cdn = createServer((req, res) => {
    const url = new URL(req.url, "http://cdn");
    const m = url.pathname.match(/^\/repos\/[0-9a-f]{8}\/([0-9a-f]{64})$/);
    const found =
      m && repos.flatMap((r) => r.files.filter((f) => f.path && f.lfs.sha256 === m[1]).map((f) => ({ r, f })))[0];
    if (!found) return send(res, 404, {}, "NoSuchKey");
    const { f } = found;
    const range = parseRange(req.headers.range);
    const record = {
      file: f.name,
      start: range ?? 0,
      authorized: Boolean(req.headers.authorization),
      sent: 0,
      ended: false,
    };
    if (req.method === "GET") stats.weightFetches.push(record);
    sendRange(req, res, f.size, { ETag: `"${f.lfs.sha256}"`, "Content-Type": "binary/octet-stream" }, (start) =>
      throttled(f.path, start, state, record, res),
    );
  });

  /** Answers a GET or HEAD of `size` bytes, honouring `Range: bytes=N-`. */
  function sendRange(req, res, size, headers, body) {
    const start = parseRange(req.headers.range);
    if (start !== null && start >= size) {
      res.writeHead(416, { "Content-Range": `bytes */${size}`, "Content-Length": 0 });
      return res.end();
    }
    const from = start ?? 0;
    res.writeHead(start === null ? 200 : 206, {
      ...headers,
      "Accept-Ranges": "bytes",
      "Content-Length": size - from,
      ...(start === null ? {} : { "Content-Range": `bytes ${from}-${size - 1}/${size}` }),
    });
    if (req.method === "HEAD") return res.end();
    const content = body(from);
    if (Buffer.isBuffer(content)) res.end(content);
  }

  for (const server of [hub, cdn]) {
    server.on("connection", (socket) => {
      open.add(socket);
      socket.on("close", () => open.delete(socket));
    });
  }
  const listen = (server, p) =>
    new Promise((resolve, reject) =>
      server.once("error", reject).listen(p, "127.0.0.1", () => resolve(server.address().port)),
    );
  const hubPort = await listen(hub, port);
  cdnUrl = `http://127.0.0.1:${await listen(cdn, 0)}`;
  return {
    url: `http://127.0.0.1:${hubPort}`,
    cdn: cdnUrl,
    repos,
    stats,
    /** Bytes per second for weights from now on, also for downloads under way; 0: no limit. */
    setRate(bytesPerSecond) {
      state.rate = bytesPerSecond;
    },
    async close() {
      for (const socket of open) socket.destroy();
      await Promise.all([hub, cdn].map((s) => new Promise((resolve) => s.close(resolve))));
    },
  };
}

function parseRange(header) {
  const m = /^bytes=(\d+)-$/.exec(header ?? "");
  return m ? Number(m[1]) : null;
}

/** Streams `path` from `start` at `state.rate` bytes per second (read again for every chunk). */
async function throttled(path, start, state, record, res) {
  let closed = false;
  res.on("close", () => {
    closed = true;
    record.ended = true;
  });
  const file = await open(path);
  try {
    let position = start;
    let windowStart = Date.now();
    let windowBytes = 0;
    let windowRate = state.rate;
    while (!closed) {
      const chunk = Buffer.alloc(CHUNK);
      const { bytesRead } = await file.read(chunk, 0, CHUNK, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      if (state.rate !== windowRate) {
        windowStart = Date.now();
        windowBytes = 0;
        windowRate = state.rate;
      }
      windowBytes += bytesRead;
      const wait = windowRate > 0 ? windowStart + (windowBytes * 1000) / windowRate - Date.now() : 0;
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      if (closed) break;
      record.sent += bytesRead;
      if (!res.write(chunk.subarray(0, bytesRead))) {
        await new Promise((resolve) => {
          const done = () => {
            res.off("drain", done);
            res.off("close", done);
            resolve();
          };
          res.on("drain", done);
          res.on("close", done);
        });
      }
    }
  } finally {
    await file.close();
  }
  if (!closed) res.end();
}

// On its own: serve until stopped.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  const option = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : fallback;
  };
  const fixture = option("--fixture");
  if (!fixture) {
    console.error("usage: node fake-hub.mjs --fixture MODEL_DIR [--port N] [--rate BYTES_PER_S]");
    process.exit(2);
  }
  const hub = await startFakeHub({ fixture, port: Number(option("--port", 0)), rate: Number(option("--rate", 0)) });
  process.stdout.write(`fake Hub on ${hub.url} (CDN ${hub.cdn}); HF_ENDPOINT=${hub.url}\n`);
}
