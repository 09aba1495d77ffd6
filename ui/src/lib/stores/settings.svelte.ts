// Settings and the facts about this installation.

import type { RuntimeInfo } from "../api/RuntimeInfo";
import type { ServerSettings } from "../api/ServerSettings";
import type { SettingsView } from "../api/SettingsView";
import { toFailure, type Failure, type Transport } from "../transport";

export type Loaded<T> =
  | { status: "loading" }
  | { status: "ready"; value: T }
  | { status: "error"; failure: Failure };

export class SettingsStore {
  settings = $state<Loaded<SettingsView>>({ status: "loading" });
  runtime = $state<Loaded<RuntimeInfo>>({ status: "loading" });
  savingToken = $state(false);
  tokenFailure = $state<Failure | null>(null);
  /** What the last token change did, for a polite announcement. */
  tokenNotice = $state("");
  savingServer = $state(false);
  /** Why the API server's settings were not saved (a 400 names the setting at fault). */
  serverFailure = $state<Failure | null>(null);
  serverNotice = $state("");

  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /** The settings, once read. */
  get value(): SettingsView | null {
    return this.settings.status === "ready" ? this.settings.value : null;
  }

  async load(): Promise<void> {
    await Promise.all([this.loadSettings(), this.loadRuntime()]);
  }

  async loadSettings(): Promise<void> {
    if (this.settings.status !== "ready") this.settings = { status: "loading" };
    try {
      this.settings = { status: "ready", value: await this.#transport.read("get_settings") };
    } catch (reason) {
      this.settings = { status: "error", failure: toFailure(reason) };
    }
  }

  async loadRuntime(): Promise<void> {
    this.runtime = { status: "loading" };
    try {
      this.runtime = { status: "ready", value: await this.#transport.read("runtime_info") };
    } catch (reason) {
      this.runtime = { status: "error", failure: toFailure(reason) };
    }
  }

  /** Keeps a Hugging Face token (null removes it). The token is never read back. */
  async setToken(token: string | null): Promise<boolean> {
    this.savingToken = true;
    this.tokenFailure = null;
    this.tokenNotice = "";
    try {
      const value = await this.#transport.call("set_hf_token", { token });
      this.settings = { status: "ready", value };
      this.tokenNotice = token === null ? "Token removed." : "Token saved.";
      return true;
    } catch (reason) {
      this.tokenFailure = toFailure(reason);
      return false;
    } finally {
      this.savingToken = false;
    }
  }

  /** Stores the API server's settings; they apply when Orchard starts again. */
  async saveServer(server: ServerSettings): Promise<boolean> {
    this.savingServer = true;
    this.serverFailure = null;
    this.serverNotice = "";
    try {
      const value = await this.#transport.call("update_settings", server);
      this.settings = { status: "ready", value };
      this.serverNotice = "Settings saved.";
      return true;
    } catch (reason) {
      this.serverFailure = toFailure(reason);
      return false;
    } finally {
      this.savingServer = false;
    }
  }
}
