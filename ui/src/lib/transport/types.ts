// The one seam between the page and Orchard: stores call a Transport, never Tauri or fetch.
//
// The operations and their shapes come from Rust (ui/src/lib/api/operations.ts). Inside
// the Tauri window they are commands (tauri.ts); in a browser they are the HTTP
// management API under /api (http.ts); in component tests, an in-memory fake.

import type { Calls, Reads, Streams } from "../api/operations";
import type { ModelRequest } from "../api/ModelRequest";
import { TransportError } from "./errors";

/** The OpenAI/Anthropic-compatible API server the desktop app hosts (app only). */
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

/** Stops a subscription; calling it twice is harmless. */
export type Unsubscribe = () => void;

export interface Transport {
  /** Which side of the app this is: some controls exist only in the desktop window. */
  readonly kind: "app" | "browser" | "test";
  /** An operation without input. */
  read<K extends keyof Reads>(op: K): Promise<Reads[K]["output"]>;
  /** An operation with input. */
  call<K extends keyof Calls>(op: K, input: Calls[K]["input"]): Promise<Calls[K]["output"]>;
  /**
   * Pushed updates until unsubscribed. The stream first sends the current state, then
   * changes. `onError` hears about interruptions (the transport may reconnect on its own
   * and then calls `onEvent` again) and about failures it gives up on.
   */
  subscribe<K extends keyof Streams>(
    op: K,
    onEvent: (event: Streams[K]["event"]) => void,
    onError?: (error: Error) => void,
  ): Unsubscribe;
  /** App only: the API server the window hosts. */
  serverStatus?(): Promise<ServerStatus>;
  /** App only: opens a model's folder in Finder or the file manager. */
  revealModel?(input: ModelRequest): Promise<void>;
  /** App only: whether Orchard starts at login. */
  launchAtLogin?(): Promise<boolean>;
  /** App only: turns starting at login on or off; answers the new state. */
  setLaunchAtLogin?(enabled: boolean): Promise<boolean>;
  /** App only: restarts Orchard (the server drains first) so changed settings apply. */
  restartApp?(): Promise<void>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function isStringOrNull(value: unknown): value is string | null {
  return value === null || typeof value === "string";
}

const SERVER_STATES: readonly string[] = ["starting", "running", "failed"];

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
