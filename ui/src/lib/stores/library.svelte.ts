// The Library: models on this machine, and what can be done with them.

import type { Capability } from "../api/Capability";
import type { Deleted } from "../api/Deleted";
import type { LibraryModel } from "../api/LibraryModel";
import { formatBytes } from "../format";
import { toFailure, type Failure, type Transport } from "../transport";

export type LibrarySort = "name" | "size" | "last_used";
export type LibraryAction = "load" | "unload" | "delete" | "reveal";

export class LibraryStore {
  status = $state<"loading" | "ready" | "error">("loading");
  models = $state<LibraryModel[]>([]);
  failure = $state<Failure | null>(null);
  /** A refresh is under way while the list stays shown. */
  refreshing = $state(false);

  filterText = $state("");
  capability = $state<Capability | "">("");
  sort = $state<LibrarySort>("name");

  busy = $state<Record<string, LibraryAction>>({});
  errors = $state<Record<string, Failure>>({});
  /** What the last delete or add did, for the page to say. */
  notice = $state("");
  adding = $state(false);
  addFailure = $state<Failure | null>(null);

  readonly #transport: Transport;
  readonly #onDeleted: (id: string) => void;
  #seq = 0;

  /** `onDeleted` hears of each model deleted, so other screens stop calling it downloaded. */
  constructor(transport: Transport, options: { onDeleted?: (id: string) => void } = {}) {
    this.#transport = transport;
    this.#onDeleted = options.onDeleted ?? (() => {});
  }

  /** The models the filter lets through, in the chosen order. */
  get visible(): LibraryModel[] {
    const text = this.filterText.trim().toLowerCase();
    const shown = this.models.filter(
      (m) =>
        (!text || m.id.toLowerCase().includes(text)) &&
        (!this.capability || (m.facts?.capabilities ?? []).includes(this.capability)),
    );
    // By the model's own name: "mlx-community/Qwen3-4B" sorts under Q.
    const name = (m: LibraryModel) => m.id.slice(m.id.lastIndexOf("/") + 1);
    const byName = (a: LibraryModel, b: LibraryModel) =>
      name(a).localeCompare(name(b), undefined, { sensitivity: "base" }) || a.id.localeCompare(b.id);
    const order: Record<LibrarySort, (a: LibraryModel, b: LibraryModel) => number> = {
      name: byName,
      size: (a, b) => b.size_bytes - a.size_bytes || byName(a, b),
      // Most recent first; never used last.
      last_used: (a, b) => (b.last_used ?? -1) - (a.last_used ?? -1) || byName(a, b),
    };
    return shown.sort(order[this.sort]);
  }

  has(id: string): boolean {
    return this.models.some((m) => m.id === id);
  }

  async refresh(): Promise<void> {
    const seq = ++this.#seq;
    if (this.status === "ready") this.refreshing = true;
    try {
      const models = await this.#transport.read("list_library");
      if (seq !== this.#seq) return;
      this.models = models;
      this.failure = null;
      this.status = "ready";
    } catch (reason) {
      if (seq !== this.#seq) return;
      this.failure = toFailure(reason);
      // A failed refresh keeps the list it had, and says so.
      if (this.status !== "ready") this.status = "error";
    } finally {
      if (seq === this.#seq) this.refreshing = false;
    }
  }

  load(id: string): Promise<boolean> {
    return this.#act(id, "load", async () => this.#replace(await this.#transport.call("load_model", { model: id })));
  }

  unload(id: string): Promise<boolean> {
    return this.#act(id, "unload", async () =>
      this.#replace(await this.#transport.call("unload_model", { model: id })),
    );
  }

  /** Deletes a model's files; the answer says what was freed. */
  async remove(id: string): Promise<Deleted | null> {
    let deleted: Deleted | null = null;
    await this.#act(id, "delete", async () => {
      deleted = await this.#transport.call("delete_model", { model: id });
      this.notice =
        deleted.freed_bytes === 0
          ? `Removed ${id} from the library; its folder stays on disk.`
          : `Deleted ${id}: freed ${formatBytes(deleted.freed_bytes)}.`;
      this.models = this.models.filter((m) => m.id !== id);
      this.#onDeleted(id);
    });
    return deleted;
  }

  reveal(id: string): Promise<boolean> {
    const reveal = this.#transport.revealModel?.bind(this.#transport);
    if (!reveal) return Promise.resolve(false);
    return this.#act(id, "reveal", () => reveal({ model: id }));
  }

  /** Adds a model folder from this machine. */
  async addFolder(path: string): Promise<boolean> {
    this.adding = true;
    this.addFailure = null;
    try {
      const model = await this.#transport.call("add_folder", { path: path.trim() });
      this.models = [...this.models.filter((m) => m.id !== model.id), model];
      this.notice = `Added ${model.id}.`;
      this.status = "ready";
      return true;
    } catch (reason) {
      this.addFailure = toFailure(reason);
      return false;
    } finally {
      this.adding = false;
    }
  }

  #replace(model: LibraryModel): void {
    this.models = this.models.map((m) => (m.id === model.id ? model : m));
  }

  async #act(id: string, action: LibraryAction, run: () => Promise<void>): Promise<boolean> {
    if (this.busy[id]) return false;
    this.busy[id] = action;
    delete this.errors[id];
    try {
      await run();
      return true;
    } catch (reason) {
      this.errors[id] = toFailure(reason);
      return false;
    } finally {
      delete this.busy[id];
    }
  }
}
