// Discover: the Hugging Face search, its filters, and the details of one model.

import type { Capability } from "../api/Capability";
import type { ModelDetails } from "../api/ModelDetails";
import type { SearchRequest } from "../api/SearchRequest";
import type { SearchResult } from "../api/SearchResult";
import type { Sort } from "../api/Sort";
import { toFailure, type Failure, type Transport } from "../transport";

/** Typing waits this long for a pause before searching. */
export const DEBOUNCE_MS = 300;
export const DEFAULT_AUTHOR = "mlx-community";

export type DetailsView =
  | { status: "loading"; repo: string }
  | { status: "ready"; repo: string; details: ModelDetails }
  | { status: "error"; repo: string; failure: Failure };

export class SearchStore {
  text = $state("");
  author = $state(DEFAULT_AUTHOR);
  architecture = $state("");
  bits = $state<number | null>(null);
  capabilities = $state<Capability[]>([]);
  fitsOnly = $state(false);
  sort = $state<Sort>("downloads");

  status = $state<"idle" | "loading" | "ready" | "error">("idle");
  results = $state<SearchResult[]>([]);
  budget = $state<number | null>(null);
  failure = $state<Failure | null>(null);
  details = $state<DetailsView | null>(null);

  readonly #transport: Transport;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #seq = 0;
  #detailsSeq = 0;

  /** The model was deleted: its result offers Download again. */
  forget(id: string): void {
    this.results = this.results.map((m) => (m.id === id ? { ...m, downloaded: false } : m));
  }

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /** The request the current fields make. */
  get request(): SearchRequest {
    return {
      text: this.text.trim() || null,
      author: this.author.trim() || null,
      sort: this.sort,
      architecture: this.architecture.trim() || null,
      bits: this.bits,
      capabilities: [...this.capabilities],
      fits_only: this.fitsOnly,
    };
  }

  /** Typed fields search after a pause. */
  setText(text: string): void {
    this.text = text;
    this.#later();
  }

  setAuthor(author: string): void {
    this.author = author;
    this.#later();
  }

  setArchitecture(architecture: string): void {
    this.architecture = architecture;
    this.#later();
  }

  /** Chosen fields search at once. */
  setSort(sort: Sort): void {
    this.sort = sort;
    void this.search();
  }

  setBits(bits: number | null): void {
    this.bits = bits;
    void this.search();
  }

  setCapability(capability: Capability, on: boolean): void {
    const rest = this.capabilities.filter((c) => c !== capability);
    this.capabilities = on ? [...rest, capability] : rest;
    void this.search();
  }

  setFitsOnly(on: boolean): void {
    this.fitsOnly = on;
    void this.search();
  }

  /** Searches now; an answer to an older search that arrives late is dropped. */
  async search(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const seq = ++this.#seq;
    this.status = "loading";
    try {
      const found = await this.#transport.call("search_models", this.request);
      if (seq !== this.#seq) return;
      this.results = found.models;
      this.budget = found.memory_budget_bytes;
      this.failure = null;
      this.status = "ready";
    } catch (reason) {
      if (seq !== this.#seq) return;
      this.failure = toFailure(reason);
      this.status = "error";
    }
  }

  async openDetails(repo: string): Promise<void> {
    const seq = ++this.#detailsSeq;
    this.details = { status: "loading", repo };
    try {
      const details = await this.#transport.call("model_details", { model: repo });
      if (seq === this.#detailsSeq) this.details = { status: "ready", repo, details };
    } catch (reason) {
      if (seq === this.#detailsSeq) this.details = { status: "error", repo, failure: toFailure(reason) };
    }
  }

  closeDetails(): void {
    this.#detailsSeq += 1;
    this.details = null;
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#seq += 1;
  }

  #later(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.search(), DEBOUNCE_MS);
  }
}
