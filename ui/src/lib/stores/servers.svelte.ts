// Servers: the loaded models' tiles and the machine's strip, kept current by the
// server_events stream (one ServersView a second) while the Servers screen is shown, and
// Start / Stop / Restart. Start also takes a profile's name, which loads its model.

import type { ServerState } from "../api/ServerState";
import type { ServerTile } from "../api/ServerTile";
import type { ServersView } from "../api/ServersView";
import type { SystemView } from "../api/SystemView";
import { INVALID_API_KEY, toFailure, type Failure, type Transport, type Unsubscribe } from "../transport";

export type ServerAction = "start" | "stop" | "restart";

/** Speeds kept per model for its sparkline: one a second, the last minute. */
export const SPEED_SAMPLES = 60;

/** What a tile shows as its state: the server's, or what this window just asked for. */
export type TileState = ServerState | "stopping";

export type ServersOptions = {
  /** A model was started or stopped: the Library's "Loaded" marks change. */
  onChange?: () => void;
};

/** A tile for a Start that is on its way, until the stream shows the server's own. */
function placeholder(model: string, asked: string | undefined): ServerTile {
  return {
    model,
    profiles: asked && asked !== model ? [asked] : [],
    state: "loading",
    error: null,
    log: [],
    memory: { weights: 0, kv_cache: 0, prompt_cache: 0 },
    memory_bytes: 0,
    uptime_seconds: 0,
    active_requests: 0,
    queued_requests: 0,
    tokens_per_second: 0,
    generated_tokens: 0,
    prompt_tokens: 0,
    cached_prompt_tokens: 0,
    prompt_cache_hit_rate: null,
    cpu_fast_path: false,
  };
}

const byModel = (a: ServerTile, b: ServerTile) =>
  a.model.toLowerCase().localeCompare(b.model.toLowerCase()) || a.model.localeCompare(b.model);

export class ServersStore {
  status = $state<"loading" | "ready" | "error">("loading");
  failure = $state<Failure | null>(null);
  /** The live stream is interrupted (it reconnects by itself). */
  live = $state<Failure | null>(null);
  system = $state<SystemView | null>(null);
  /** Actions in flight per model. */
  busy = $state<Record<string, ServerAction>>({});
  /** The last failed action per model. */
  errors = $state<Record<string, Failure>>({});
  /**
   * A Start that failed before Orchard made a tile for it (an unknown model, say): the
   * name asked for (a model's or a profile's), and where it was asked from.
   */
  startFailure = $state<{ model: string; failure: Failure; from?: string } | null>(null);
  /** Each running model's decode speed as the stream reported it, oldest first. */
  speeds = $state<Record<string, number[]>>({});

  #servers = $state<ServerTile[]>([]);
  /** The name each Start on its way asked for, by model, when it was a profile's. */
  #asked = $state<Record<string, string>>({});
  #unsubscribe: Unsubscribe | undefined;
  /** Stream events received: a list read that started before the latest event is stale. */
  #events = 0;
  readonly #transport: Transport;
  readonly #onChange: () => void;

  constructor(transport: Transport, options: ServersOptions = {}) {
    this.#transport = transport;
    this.#onChange = options.onChange ?? (() => {});
  }

  /** Reads the tiles and follows the stream until `unwatch`. */
  watch(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = this.#transport.subscribe(
      "server_events",
      (view) => {
        this.#events += 1;
        this.live = null;
        this.#apply(view);
        this.#sample(view);
      },
      (error) => {
        const failure = toFailure(error);
        if (failure.code !== INVALID_API_KEY) this.live = failure;
      },
    );
    void this.reload();
  }

  unwatch(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.live = null;
  }

  async reload(): Promise<void> {
    const seen = this.#events;
    try {
      const view = await this.#transport.read("list_servers");
      if (seen === this.#events) this.#apply(view);
      this.failure = null;
      this.status = "ready";
    } catch (reason) {
      this.failure = toFailure(reason);
      // Tiles already shown stay, with a note that they could not be refreshed.
      if (this.status !== "ready") this.status = "error";
    }
  }

  /** The tiles in the server's order (by model), with a placeholder for a Start on its way. */
  get tiles(): ServerTile[] {
    const pending = Object.entries(this.busy)
      .filter(([model, action]) => action === "start" && !this.#servers.some((t) => t.model === model))
      .map(([model]) => placeholder(model, this.#asked[model]));
    return pending.length === 0 ? this.#servers : [...this.#servers, ...pending].sort(byModel);
  }

  tile(model: string): ServerTile | undefined {
    return this.tiles.find((t) => t.model === model);
  }

  /** The state a tile shows: what was just asked for wins over a figure a second old. */
  stateOf(tile: ServerTile): TileState {
    const busy = this.busy[tile.model];
    if (busy === "start") return "loading";
    if (busy === "restart") return "restarting";
    if (busy === "stop") return "stopping";
    return tile.state;
  }

  /**
   * Loads a model, or a profile's model when `name` is a profile's (then `model` is the
   * model it serves, whose tile shows the Start); resolves once it is loaded (or failed).
   * `from` says which control asked, so that a failure is shown beside it.
   */
  async start(name: string, options: { model?: string; from?: string } = {}): Promise<boolean> {
    const model = options.model ?? name;
    this.startFailure = null;
    const profile = name !== model && !this.busy[model];
    if (profile) this.#asked[model] = name;
    const done = await this.#act(model, "start", () => this.#transport.call("start_server", { model: name }));
    if (profile) delete this.#asked[model];
    if (!done) {
      const failure = this.errors[model];
      // The stream shows the failed tile within a second; read it now in case it is not live.
      await this.reload();
      if (failure && !this.#servers.some((t) => t.model === model)) {
        this.startFailure = { model: name, failure, from: options.from };
      }
    }
    return done;
  }

  /** Loading again after a failure is starting it again. */
  retry(model: string): Promise<boolean> {
    return this.start(model);
  }

  stop(model: string): Promise<boolean> {
    return this.#act(model, "stop", () => this.#transport.call("stop_server", { model }));
  }

  restart(model: string): Promise<boolean> {
    return this.#act(model, "restart", () => this.#transport.call("restart_server", { model }));
  }

  /**
   * Takes a failed load's tile away. Orchard forgets the failure on a Stop, and answers
   * not_found because nothing was loaded: that is what was wanted.
   */
  async dismiss(model: string): Promise<boolean> {
    const done = await this.stop(model);
    if (!done && this.errors[model]?.code === "not_found") {
      delete this.errors[model];
      this.#servers = this.#servers.filter((t) => t.model !== model);
      await this.reload();
      return true;
    }
    return done;
  }

  clearStartFailure(): void {
    this.startFailure = null;
  }

  #apply(view: ServersView): void {
    this.system = view.system;
    this.#servers = view.servers;
    this.status = "ready";
  }

  /** One speed per stream event (one a second) for each running model. */
  #sample(view: ServersView): void {
    const next: Record<string, number[]> = {};
    for (const tile of view.servers) {
      if (tile.state !== "running") continue;
      next[tile.model] = [...(this.speeds[tile.model] ?? []), tile.tokens_per_second].slice(-SPEED_SAMPLES);
    }
    this.speeds = next;
  }

  async #act(model: string, action: ServerAction, run: () => Promise<ServersView>): Promise<boolean> {
    if (this.busy[model]) return false;
    this.busy[model] = action;
    delete this.errors[model];
    try {
      this.#apply(await run());
      return true;
    } catch (reason) {
      this.errors[model] = toFailure(reason);
      return false;
    } finally {
      delete this.busy[model];
      // Even a failed restart has unloaded the model.
      this.#onChange();
    }
  }
}
