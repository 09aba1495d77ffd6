// The API server's settings as the form edits them: the fields, their labels and limits,
// what the page can check before sending, and which field a refusal from Orchard names.

import type { ServerSettings } from "../../lib/api/ServerSettings";

/** The form's values: a number field left empty (or not a number) is null. */
export type Draft = {
  [K in keyof ServerSettings]: ServerSettings[K] extends number ? number | null : ServerSettings[K];
};

export type NumberField = "port" | "idle_ttl_minutes" | "memory_budget_percent" | "max_loaded_models" | "queue_capacity";

export const NUMBER_FIELDS: { key: NumberField; label: string; min: number; max?: number; hint: string }[] = [
  { key: "port", label: "Port", min: 1, max: 65535, hint: "Clients call http://host:port/v1." },
  {
    key: "idle_ttl_minutes",
    label: "Idle time-to-live (minutes)",
    min: 0,
    hint: "Unload a model nobody used for this long; 0 never unloads.",
  },
  {
    key: "memory_budget_percent",
    label: "Memory budget (%)",
    min: 1,
    max: 100,
    hint: "The share of this machine's memory loaded models may take.",
  },
  { key: "max_loaded_models", label: "Maximum loaded models", min: 1, hint: "Loading one more unloads the least used." },
  {
    key: "queue_capacity",
    label: "Queue size",
    min: 1,
    hint: "Requests that may wait per model; more are refused with 429.",
  },
];

export const FIELDS: (keyof ServerSettings)[] = [
  "host",
  "port",
  "require_api_key",
  "jit_loading",
  "idle_ttl_minutes",
  "memory_budget_percent",
  "max_loaded_models",
  "queue_capacity",
];

export function toDraft(settings: ServerSettings): Draft {
  return { ...settings };
}

export function sameDraft(a: Draft, b: Draft): boolean {
  return FIELDS.every((key) => a[key] === b[key]);
}

/** Orchard starts its port only on an IP address or `localhost` (crates/server launch). */
function isAddress(host: string): boolean {
  if (host === "localhost") return true;
  const v4 = host.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
  if (v4) return v4.slice(1).every((part) => Number(part) <= 255);
  return host.includes(":") && /^[0-9a-fA-F:.]+$/.test(host);
}

/** Whether only this machine can reach an address. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** What is wrong with each field, checked as Orchard will check it when it starts. */
export function problems(draft: Draft): Partial<Record<keyof ServerSettings, string>> {
  const found: Partial<Record<keyof ServerSettings, string>> = {};
  const host = draft.host.trim();
  if (!host) found.host = "Enter the address to listen on, such as 127.0.0.1.";
  else if (!isAddress(host)) found.host = "Use an IP address (127.0.0.1, ::1 or 0.0.0.0) or localhost.";
  else if (!draft.require_api_key && !isLoopback(host)) {
    found.require_api_key = `Listening on ${host} reaches beyond this machine: Orchard requires a key there.`;
  }
  for (const field of NUMBER_FIELDS) {
    const value = draft[field.key];
    const range = field.max === undefined ? `${field.min} or more` : `from ${field.min} to ${field.max}`;
    if (
      typeof value !== "number" ||
      !Number.isInteger(value) ||
      value < field.min ||
      (field.max !== undefined && value > field.max) ||
      value > Number.MAX_SAFE_INTEGER
    ) {
      found[field.key] = `${field.label}: enter a whole number ${range}.`;
    }
  }
  return found;
}

/** The settings to send, once `problems` found none. */
export function toSettings(draft: Draft): ServerSettings {
  const number = (value: number | null) => value ?? 0;
  return {
    host: draft.host.trim(),
    port: number(draft.port),
    require_api_key: draft.require_api_key,
    jit_loading: draft.jit_loading,
    idle_ttl_minutes: number(draft.idle_ttl_minutes),
    memory_budget_percent: number(draft.memory_budget_percent),
    max_loaded_models: number(draft.max_loaded_models),
    queue_capacity: number(draft.queue_capacity),
  };
}

/** The field a refusal names ("memory_budget_percent must be between 1 and 100"), if any. */
export function fieldNamed(message: string): keyof ServerSettings | null {
  // Longest names first, and whole words only: "host" is not in "allowed_hosts" or "localhost".
  const byLength = [...FIELDS].sort((a, b) => b.length - a.length);
  return byLength.find((key) => new RegExp(`(^|[^A-Za-z0-9_])${key}([^A-Za-z0-9_]|$)`).test(message)) ?? null;
}
