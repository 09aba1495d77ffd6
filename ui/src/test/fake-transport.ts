// An in-memory Transport for component tests: each test says how each operation answers,
// pushes stream events by hand, and reads back which operations were called with what.

import type { Calls, Reads, Streams } from "../lib/api/operations";
import type { ModelRequest } from "../lib/api/ModelRequest";
import { TransportError, type ServerStatus, type Transport, type Unsubscribe } from "../lib/transport";

type Answer<T> = T | Promise<T> | (() => T | Promise<T>);
type ReadHandlers = { [K in keyof Reads]?: Answer<Reads[K]["output"]> };
type CallHandlers = { [K in keyof Calls]?: (input: Calls[K]["input"]) => Calls[K]["output"] | Promise<Calls[K]["output"]> };

export type Recorded = { op: string; input?: unknown };

export class FakeTransport implements Transport {
  kind: Transport["kind"] = "test";
  readonly recorded: Recorded[] = [];
  readonly reads: ReadHandlers = {};
  readonly calls: CallHandlers = {};
  readonly #subscribers = new Map<keyof Streams, Set<{ onEvent: (e: never) => void; onError?: (e: Error) => void }>>();
  serverStatus?: () => Promise<ServerStatus>;
  revealModel?: (input: ModelRequest) => Promise<void>;
  launchAtLogin?: () => Promise<boolean>;
  setLaunchAtLogin?: (enabled: boolean) => Promise<boolean>;
  restartApp?: () => Promise<void>;
  /** App only: whether "start at login" is on. */
  atLogin = false;

  constructor(options: { app?: boolean } = {}) {
    if (options.app) {
      this.kind = "app";
      this.revealModel = async (input) => {
        this.recorded.push({ op: "reveal_model", input });
      };
      this.launchAtLogin = async () => this.atLogin;
      this.setLaunchAtLogin = async (enabled) => {
        this.recorded.push({ op: "set_launch_at_login", input: enabled });
        this.atLogin = enabled;
        return enabled;
      };
      this.restartApp = async () => {
        this.recorded.push({ op: "restart_app" });
      };
    }
  }

  onRead<K extends keyof Reads>(op: K, answer: Answer<Reads[K]["output"]>): this {
    (this.reads as Record<string, unknown>)[op] = answer;
    return this;
  }

  onCall<K extends keyof Calls>(
    op: K,
    handler: (input: Calls[K]["input"]) => Calls[K]["output"] | Promise<Calls[K]["output"]>,
  ): this {
    (this.calls as Record<string, unknown>)[op] = handler;
    return this;
  }

  async read<K extends keyof Reads>(op: K): Promise<Reads[K]["output"]> {
    this.recorded.push({ op });
    const answer = this.reads[op] as Answer<Reads[K]["output"]> | undefined;
    if (answer === undefined) throw new TransportError(`fake: no answer for ${op}`, "internal");
    return typeof answer === "function" ? await (answer as () => Reads[K]["output"])() : await answer;
  }

  async call<K extends keyof Calls>(op: K, input: Calls[K]["input"]): Promise<Calls[K]["output"]> {
    this.recorded.push({ op, input });
    const handler = this.calls[op] as ((i: Calls[K]["input"]) => Calls[K]["output"]) | undefined;
    if (!handler) throw new TransportError(`fake: no handler for ${op}`, "internal");
    return await handler(input);
  }

  subscribe<K extends keyof Streams>(
    op: K,
    onEvent: (event: Streams[K]["event"]) => void,
    onError?: (error: Error) => void,
  ): Unsubscribe {
    this.recorded.push({ op });
    const set = this.#subscribers.get(op) ?? new Set();
    this.#subscribers.set(op, set);
    const sub = { onEvent: onEvent as (e: never) => void, onError };
    set.add(sub);
    return () => set.delete(sub);
  }

  /** Pushes one event to every subscriber of `op`. */
  emit<K extends keyof Streams>(op: K, event: Streams[K]["event"]): void {
    for (const sub of this.#subscribers.get(op) ?? []) (sub.onEvent as (e: Streams[K]["event"]) => void)(event);
  }

  /** Tells every subscriber of `op` that its stream failed. */
  fail(op: keyof Streams, error: Error): void {
    for (const sub of this.#subscribers.get(op) ?? []) sub.onError?.(error);
  }

  subscriberCount(op: keyof Streams): number {
    return this.#subscribers.get(op)?.size ?? 0;
  }

  /** The inputs of every call of `op`, in order. */
  inputs<K extends keyof Calls>(op: K): Calls[K]["input"][] {
    return this.recorded.filter((r) => r.op === op).map((r) => r.input as Calls[K]["input"]);
  }

  count(op: string): number {
    return this.recorded.filter((r) => r.op === op).length;
  }
}

/** A promise and the functions that settle it, for holding an answer back. */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
