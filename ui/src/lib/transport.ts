// How the page talks to Orchard.
//
// Inside the Tauri window the page calls Rust commands over Tauri's IPC.
// Served by the management API in a plain browser, it uses HTTP instead.
// Both backends return the same shapes; field names are snake_case because
// the Rust side serialises them with serde.

import { invoke } from "@tauri-apps/api/core";

export type Device = "cpu" | "gpu";

export type RuntimeInfo = {
  orchard_version: string;
  mlx_version: string;
  device: Device;
};

/** The OpenAI/Anthropic-compatible API server the app hosts. */
export type ServerStatus = {
  state: "starting" | "running" | "failed";
  /** `http://HOST:PORT/v1` once running. */
  url: string | null;
  api_key_required: boolean;
  /** A key created on this first start; the only time it can be shown. */
  new_api_key: string | null;
  /** Why the server is not running, when it failed. */
  error: string | null;
};

export interface Transport {
  runtimeInfo(): Promise<RuntimeInfo>;
  serverStatus(): Promise<ServerStatus>;
}

/** An Error that may carry the machine-readable `code` sent by the Rust side. */
export class TransportError extends Error {
  readonly code: string | undefined;

  constructor(message: string, code?: string) {
    super(message);
    this.name = "TransportError";
    this.code = code;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** Pulls a message (and code) out of the error shapes Orchard sends. */
function describe(reason: unknown): { message: string; code?: string } | undefined {
  if (typeof reason === "string") return { message: reason };
  if (!isRecord(reason)) return undefined;
  const code = typeof reason.code === "string" ? reason.code : undefined;
  if (typeof reason.message === "string") return { message: reason.message, code };
  if (typeof reason.error === "string") return { message: reason.error, code };
  if (isRecord(reason.error)) return describe(reason.error);
  return undefined;
}

/**
 * Turns whatever a failed call rejected with into an Error.
 *
 * Tauri commands that return `Err(e)` reject with the serialised error,
 * which for Orchard is `{ code: string, message: string }`; the Error's
 * message is that `message` and its `code` is kept on the TransportError.
 */
export function toError(reason: unknown): Error {
  if (reason instanceof Error) return reason;
  const described = describe(reason);
  if (described) return new TransportError(described.message, described.code);
  let text: string;
  try {
    text = JSON.stringify(reason) ?? String(reason);
  } catch {
    text = String(reason);
  }
  return new TransportError(`Unexpected error: ${text}`);
}

/** Checks that a value received from the other side really is a RuntimeInfo. */
export function parseRuntimeInfo(value: unknown): RuntimeInfo {
  if (
    isRecord(value) &&
    typeof value.orchard_version === "string" &&
    typeof value.mlx_version === "string" &&
    (value.device === "cpu" || value.device === "gpu")
  ) {
    return {
      orchard_version: value.orchard_version,
      mlx_version: value.mlx_version,
      device: value.device,
    };
  }
  throw new TransportError("Malformed runtime info received from Orchard");
}

const SERVER_STATES: readonly string[] = ["starting", "running", "failed"];

function isStringOrNull(value: unknown): value is string | null {
  return value === null || typeof value === "string";
}

/** Checks that a value received from the other side really is a ServerStatus. */
export function parseServerStatus(value: unknown): ServerStatus {
  if (
    isRecord(value) &&
    typeof value.state === "string" &&
    SERVER_STATES.includes(value.state) &&
    isStringOrNull(value.url) &&
    typeof value.api_key_required === "boolean" &&
    isStringOrNull(value.new_api_key) &&
    isStringOrNull(value.error)
  ) {
    return {
      state: value.state as ServerStatus["state"],
      url: value.url,
      api_key_required: value.api_key_required,
      new_api_key: value.new_api_key,
      error: value.error,
    };
  }
  throw new TransportError("Malformed server status received from Orchard");
}

/** Talks to the Rust side through Tauri commands. */
export class TauriTransport implements Transport {
  async runtimeInfo(): Promise<RuntimeInfo> {
    let value: unknown;
    try {
      value = await invoke<unknown>("runtime_info");
    } catch (reason) {
      throw toError(reason);
    }
    return parseRuntimeInfo(value);
  }

  async serverStatus(): Promise<ServerStatus> {
    let value: unknown;
    try {
      value = await invoke<unknown>("server_status");
    } catch (reason) {
      throw toError(reason);
    }
    return parseServerStatus(value);
  }
}

/** Talks to Orchard's management API over HTTP. */
export class HttpTransport implements Transport {
  readonly baseUrl: string;

  constructor(baseUrl: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
  }

  async runtimeInfo(): Promise<RuntimeInfo> {
    return parseRuntimeInfo(await this.getJson("/api/runtime"));
  }

  async serverStatus(): Promise<ServerStatus> {
    return parseServerStatus(await this.getJson("/api/server"));
  }

  private async getJson(path: string): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        headers: { Accept: "application/json" },
      });
    } catch (reason) {
      const detail = reason instanceof Error ? reason.message : String(reason);
      throw new TransportError(`Cannot reach Orchard at ${this.baseUrl}: ${detail}`);
    }
    const body = await response.text();
    if (!response.ok) throw httpError(response, body);
    try {
      return JSON.parse(body) as unknown;
    } catch {
      throw new TransportError(`Invalid JSON from ${path}`);
    }
  }
}

function httpError(response: Response, body: string): Error {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  const described = describe(parsed);
  if (described) return new TransportError(described.message, described.code);
  const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  const text = body.trim();
  return new TransportError(text && text.length <= 500 ? `${status}: ${text}` : status);
}

/** The bits of `window` that pickTransport looks at. */
export type TransportHost = {
  __TAURI_INTERNALS__?: unknown;
  location: { origin: string };
};

/** Tauri IPC inside the Orchard window, otherwise HTTP to the page's own origin. */
export function pickTransport(host: TransportHost = window as unknown as TransportHost): Transport {
  if (host.__TAURI_INTERNALS__ !== undefined && host.__TAURI_INTERNALS__ !== null) {
    return new TauriTransport();
  }
  return new HttpTransport(host.location.origin);
}
