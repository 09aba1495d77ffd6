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

export interface Transport {
  runtimeInfo(): Promise<RuntimeInfo>;
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
