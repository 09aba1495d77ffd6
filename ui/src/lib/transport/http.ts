// The browser's transport: Orchard's HTTP management API under /api on the page's origin.
//
// Reads are `GET path`, calls `POST path` with a JSON body, streams server-sent events
// read with fetch + eventsource-parser, so the API key travels in a header and never in a
// URL (EventSource cannot send headers).

import { createParser } from "eventsource-parser";
import { CALLS, READS, STREAMS, type Calls, type Reads, type Streams } from "../api/operations";
import { INVALID_API_KEY, TransportError, UNREACHABLE, describe, toError } from "./errors";
import type { Transport, Unsubscribe } from "./types";

type Init = Omit<RequestInit, "headers"> & { headers?: Record<string, string> };

export type HttpOptions = {
  /** The origin Orchard serves the page from, e.g. `http://127.0.0.1:10240`. */
  baseUrl: string;
  /** The API key to send, if one is known. */
  getKey?: () => string | null;
  /** Orchard answered 401: `hadKey` says whether a key was sent (and refused). */
  onUnauthorized?: (hadKey: boolean) => void;
  /** First wait before reconnecting a dropped stream; doubles up to 30 s. */
  reconnectMs?: number;
  fetch?: typeof fetch;
};

const MAX_RECONNECT_MS = 30_000;

export class HttpTransport implements Transport {
  readonly kind = "browser" as const;
  readonly baseUrl: string;
  private readonly getKey: () => string | null;
  private readonly onUnauthorized: (hadKey: boolean) => void;
  private readonly reconnectMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: HttpOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.getKey = options.getKey ?? (() => null);
    this.onUnauthorized = options.onUnauthorized ?? (() => {});
    this.reconnectMs = options.reconnectMs ?? 1000;
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  async read<K extends keyof Reads>(op: K): Promise<Reads[K]["output"]> {
    return (await this.request(READS[op], { method: "GET" })) as Reads[K]["output"];
  }

  async call<K extends keyof Calls>(op: K, input: Calls[K]["input"]): Promise<Calls[K]["output"]> {
    return (await this.request(CALLS[op], {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(input),
    })) as Calls[K]["output"];
  }

  subscribe<K extends keyof Streams>(
    op: K,
    onEvent: (event: Streams[K]["event"]) => void,
    onError?: (error: Error) => void,
  ): Unsubscribe {
    const controller = new AbortController();
    const report = (error: Error) => {
      if (!controller.signal.aborted) onError?.(error);
    };
    void (async () => {
      let delay = this.reconnectMs;
      while (!controller.signal.aborted) {
        let heard = false;
        try {
          await this.stream(STREAMS[op], controller.signal, (data) => {
            heard = true;
            let event: Streams[K]["event"];
            try {
              event = JSON.parse(data) as Streams[K]["event"];
            } catch {
              report(new TransportError(`Invalid JSON in an update from ${STREAMS[op]}`));
              return;
            }
            if (!controller.signal.aborted) onEvent(event);
          });
          report(new TransportError("Live updates were interrupted; reconnecting…", UNREACHABLE));
        } catch (reason) {
          if (controller.signal.aborted) return;
          const error = toError(reason);
          report(error);
          // A refused key stops here: the page asks for a new one and subscribes again.
          if (error instanceof TransportError && error.code === INVALID_API_KEY) return;
        }
        if (heard) delay = this.reconnectMs;
        await sleep(delay, controller.signal);
        delay = Math.min(delay * 2, MAX_RECONNECT_MS);
      }
    })();
    return () => controller.abort();
  }

  private headers(extra?: Record<string, string>): { headers: Headers; hadKey: boolean } {
    const headers = new Headers(extra);
    const key = this.getKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    return { headers, hadKey: Boolean(key) };
  }

  private async send(path: string, init: Init): Promise<Response> {
    const { headers, hadKey } = this.headers(init.headers);
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.baseUrl}${path}`, { ...init, headers });
    } catch (reason) {
      if (init.signal?.aborted) throw reason;
      const detail = reason instanceof Error ? reason.message : String(reason);
      throw new TransportError(`Cannot reach Orchard at ${this.baseUrl}: ${detail}`, UNREACHABLE);
    }
    if (response.status === 401) {
      this.onUnauthorized(hadKey);
      const body = await response.text().catch(() => "");
      const message = describe(parseJson(body))?.message;
      throw new TransportError(
        message || (hadKey ? "The API key was not accepted." : "Orchard needs an API key."),
        INVALID_API_KEY,
      );
    }
    return response;
  }

  private async request(path: string, init: Init): Promise<unknown> {
    const response = await this.send(path, {
      ...init,
      headers: { Accept: "application/json", ...init.headers },
    });
    const body = await response.text();
    if (!response.ok) throw httpError(response, body);
    const parsed = parseJson(body);
    if (parsed === undefined) throw new TransportError(`Invalid JSON from ${path}`);
    return parsed;
  }

  /** Reads one server-sent event stream until it ends; each event's data goes to `onData`. */
  private async stream(path: string, signal: AbortSignal, onData: (data: string) => void): Promise<void> {
    const response = await this.send(path, {
      method: "GET",
      headers: { Accept: "text/event-stream" },
      signal,
    });
    if (!response.ok) throw httpError(response, await response.text());
    if (!response.body) throw new TransportError(`No body in the answer from ${path}`);
    const parser = createParser({ onEvent: (message) => onData(message.data) });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } finally {
      reader.releaseLock();
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function httpError(response: Response, body: string): Error {
  const described = describe(parseJson(body));
  if (described) return new TransportError(described.message, described.code);
  const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  const text = body.trim();
  return new TransportError(text && text.length <= 500 ? `${status}: ${text}` : status);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
