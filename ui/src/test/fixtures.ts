// Values shaped as Orchard sends them, for tests; each builder takes overrides.

import type { DownloadView } from "../lib/api/DownloadView";
import type { LibraryModel } from "../lib/api/LibraryModel";
import type { ModelDetails } from "../lib/api/ModelDetails";
import type { ModelFacts } from "../lib/api/ModelFacts";
import type { Profile } from "../lib/api/Profile";
import type { RuntimeInfo } from "../lib/api/RuntimeInfo";
import type { SearchResult } from "../lib/api/SearchResult";
import type { SearchResults } from "../lib/api/SearchResults";
import type { SettingsView } from "../lib/api/SettingsView";
import type { ApiKeyView } from "../lib/api/ApiKeyView";
import type { ServerTile } from "../lib/api/ServerTile";
import type { ServersView } from "../lib/api/ServersView";
import type { SystemView } from "../lib/api/SystemView";

export const SMOL = "mlx-community/SmolLM2-135M-Instruct-4bit";
export const QWEN = "mlx-community/Qwen3-4B-4bit";

export function result(overrides: Partial<SearchResult> = {}): SearchResult {
  return {
    id: SMOL,
    downloads: 12_345,
    likes: 42,
    size_bytes: 76_300_000,
    last_modified: "2025-05-01T10:00:00Z",
    architecture: "llama",
    quantization_bits: 4,
    parameters: 135_000_000,
    capabilities: [],
    supported: true,
    gated: false,
    memory_estimate_bytes: 84_000_000,
    fit: "fits",
    downloaded: false,
    ...overrides,
  };
}

export function results(models: SearchResult[], budget = 12_000_000_000): SearchResults {
  return { models, memory_budget_bytes: budget };
}

export function facts(overrides: Partial<ModelFacts> = {}): ModelFacts {
  return {
    architecture: "llama",
    supported: true,
    parameters: 135_000_000,
    quantization_bits: 4,
    quantization_group_size: 64,
    context_length: 8192,
    kv_bytes_per_token: 46_080,
    weight_bytes: 76_000_000,
    capabilities: [],
    ...overrides,
  };
}

export function details(overrides: Partial<ModelDetails> = {}): ModelDetails {
  return {
    id: SMOL,
    sha: "0123456789abcdef",
    readme: "# SmolLM2\n\nA **small** model.",
    files: [
      { name: "config.json", size_bytes: 1_200 },
      { name: "model.safetensors", size_bytes: 76_000_000 },
    ],
    size_bytes: 76_001_200,
    license: "apache-2.0",
    gated: false,
    needs_token: false,
    downloads: 12_345,
    likes: 42,
    last_modified: "2025-05-01T10:00:00Z",
    facts: facts(),
    memory_estimate_bytes: 84_000_000,
    fit: "fits",
    downloaded: false,
    ...overrides,
  };
}

export function download(overrides: Partial<DownloadView> = {}): DownloadView {
  return {
    repo: SMOL,
    state: "running",
    file: "model.safetensors",
    downloaded: 0,
    total: 100_000_000,
    error: null,
    ...overrides,
  };
}

export function libraryModel(overrides: Partial<LibraryModel> = {}): LibraryModel {
  return {
    id: SMOL,
    source: "hugging_face",
    path: "/home/me/.cache/huggingface/hub/models--mlx-community--SmolLM2-135M-Instruct-4bit/snapshots/abc",
    size_bytes: 76_300_000,
    revisions: [{ commit: "abcdef0123456789", refs: ["main"], size_bytes: 76_300_000 }],
    facts: facts(),
    last_used: null,
    loaded: false,
    memory_bytes: null,
    ...overrides,
  };
}

export function settings(overrides: Partial<SettingsView> = {}): SettingsView {
  return {
    hf_token_set: false,
    hub_endpoint: "https://huggingface.co",
    offline: false,
    memory_budget_bytes: 12_000_000_000,
    total_memory_bytes: 16_000_000_000,
    token_source: "none",
    server: {
      host: "127.0.0.1",
      port: 10240,
      require_api_key: true,
      jit_loading: true,
      idle_ttl_minutes: 30,
      memory_budget_percent: 75,
      max_loaded_models: 4,
      queue_capacity: 16,
    },
    restart_required: false,
    data_dir: "/home/me/.local/share/orchard",
    hub_cache_dir: "/home/me/.cache/huggingface/hub",
    model_folders: [],
    ...overrides,
  };
}

export const RUNTIME: RuntimeInfo = {
  orchard_version: "0.1.0",
  mlx_version: "0.29.3",
  backend: "cpu",
  device: "cpu",
};

/** The machine as the Servers screen's strip shows it: 16 GB, a 12 GB budget, 8 cores, CPU backend. */
export function system(overrides: Partial<SystemView> = {}): SystemView {
  return {
    total_memory_bytes: 16_000_000_000,
    used_memory_bytes: 9_000_000_000,
    process_memory_bytes: 1_500_000_000,
    memory_budget_bytes: 12_000_000_000,
    cpu_percent: 200,
    cpu_cores: 8,
    backend: "cpu",
    gpu: null,
    ...overrides,
  };
}

/** A running model's tile. */
export function serverTile(overrides: Partial<ServerTile> = {}): ServerTile {
  return {
    model: SMOL,
    profiles: [],
    state: "running",
    error: null,
    log: [],
    memory: { weights: 80_000_000, kv_cache: 15_000_000, prompt_cache: 5_000_000 },
    memory_bytes: 100_000_000,
    uptime_seconds: 180,
    active_requests: 2,
    queued_requests: 1,
    tokens_per_second: 41.7,
    generated_tokens: 12_345,
    prompt_tokens: 1_000,
    cached_prompt_tokens: 630,
    prompt_cache_hit_rate: 0.63,
    cpu_fast_path: false,
    ...overrides,
  };
}

export function serversView(servers: ServerTile[] = [], overrides: Partial<SystemView> = {}): ServersView {
  return { system: system(overrides), servers };
}

export function apiKey(overrides: Partial<ApiKeyView> = {}): ApiKeyView {
  return {
    id: 1,
    name: "default",
    prefix: "orch-1a2b3c4...",
    created_at: "2025-05-01T10:00:00Z",
    last_used_at: null,
    revoked_at: null,
    ...overrides,
  };
}

/** A profile serving SmolLM2 with every default left to the model or the request. */
export function profile(overrides: Partial<Profile> = {}): Profile {
  return {
    name: "coder",
    model: SMOL,
    description: "",
    system_prompt: "",
    temperature: null,
    top_p: null,
    top_k: null,
    min_p: null,
    repetition_penalty: null,
    max_tokens: null,
    context_length: null,
    idle_ttl_minutes: null,
    keep_loaded: false,
    ...overrides,
  };
}
