// API keys for Orchard's OpenAI- and Anthropic-compatible port: listed without their
// secrets, created (the secret comes back once, to the caller, and is not kept here),
// revoked.

import type { ApiKeyView } from "../api/ApiKeyView";
import type { NewKeyView } from "../api/NewKeyView";
import { toFailure, type Failure, type Transport } from "../transport";

export class KeysStore {
  status = $state<"loading" | "ready" | "error">("loading");
  keys = $state<ApiKeyView[]>([]);
  failure = $state<Failure | null>(null);
  creating = $state(false);
  createFailure = $state<Failure | null>(null);
  /** Revokes in flight, by key id. */
  revoking = $state<Record<number, boolean>>({});
  /** The last failed revoke per key id. */
  errors = $state<Record<number, Failure>>({});

  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  async load(): Promise<void> {
    if (this.status !== "ready") this.status = "loading";
    try {
      this.keys = await this.#transport.read("list_keys");
      this.failure = null;
      this.status = "ready";
    } catch (reason) {
      this.failure = toFailure(reason);
      if (this.status !== "ready") this.status = "error";
    }
  }

  /**
   * Makes a key. The answer holds its secret: the caller shows it once; this store keeps
   * only the listed key.
   */
  async create(name: string): Promise<NewKeyView | null> {
    this.creating = true;
    this.createFailure = null;
    try {
      const made = await this.#transport.call("create_key", { name: name.trim() });
      this.keys = [...this.keys.filter((k) => k.id !== made.key.id), made.key];
      this.status = "ready";
      return made;
    } catch (reason) {
      this.createFailure = toFailure(reason);
      return null;
    } finally {
      this.creating = false;
    }
  }

  async revoke(id: number): Promise<boolean> {
    if (this.revoking[id]) return false;
    this.revoking[id] = true;
    delete this.errors[id];
    try {
      this.keys = await this.#transport.call("revoke_key", { id });
      return true;
    } catch (reason) {
      this.errors[id] = toFailure(reason);
      return false;
    } finally {
      delete this.revoking[id];
    }
  }
}
