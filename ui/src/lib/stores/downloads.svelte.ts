// Downloads: the tiles' state, kept current by the download_events stream.
//
// Speed, time left and "stalled" are computed here from when the events arrived, so the
// tile never shows a frozen speed: the rate is measured over the last few seconds up to
// now, and a running transfer that received nothing for 10 s is stalled.

import type { DownloadView } from "../api/DownloadView";
import { INVALID_API_KEY, toFailure, type Failure, type Transport, type Unsubscribe } from "../transport";

/** A running download that received nothing for this long is stalled. */
export const STALL_MS = 10_000;
/** The window over which speed is measured. */
export const SPEED_WINDOW_MS = 5_000;

type Sample = { t: number; bytes: number };

type Entry = {
  view: DownloadView;
  /** Newer tiles sort first. */
  order: number;
  dismissed: boolean;
  /** When `downloaded` last grew (or the download was first seen running). */
  progressAt: number;
  /** Byte counts with their arrival times, pruned to the speed window (plus one before it). */
  samples: Sample[];
  /** Stream events received for it: a call's answer older than an event is ignored. */
  seq: number;
};

/** What a tile shows. */
export type Tile = {
  repo: string;
  view: DownloadView;
  /** Bytes per second over the last seconds; null until it can be measured, or when stalled. */
  speed: number | null;
  /** Seconds until done at the current speed; null when unknown. */
  secondsLeft: number | null;
  stalled: boolean;
  /** 0-100, or null when the total is unknown. */
  percent: number | null;
};

export type DownloadAction = "start" | "pause" | "resume" | "cancel";

export type DownloadsOptions = {
  clock?: () => number;
  /** A download finished: the library has a new model. */
  onDone?: (repo: string) => void;
};

export class DownloadsStore {
  status = $state<"loading" | "ready" | "error">("loading");
  failure = $state<Failure | null>(null);
  /** The live stream is interrupted (it reconnects by itself). */
  live = $state<Failure | null>(null);
  /** The last failed action per repo. */
  errors = $state<Record<string, Failure>>({});
  /** Actions in flight per repo. */
  busy = $state<Record<string, DownloadAction>>({});
  now = $state(0);

  #entries = $state<Record<string, Entry>>({});
  #order = 0;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #unsubscribe: Unsubscribe | undefined;
  readonly #transport: Transport;
  readonly #clock: () => number;
  readonly #onDone: (repo: string) => void;

  constructor(transport: Transport, options: DownloadsOptions = {}) {
    this.#transport = transport;
    this.#clock = options.clock ?? (() => Date.now());
    this.#onDone = options.onDone ?? (() => {});
    this.now = this.#clock();
  }

  /** Lists the downloads Orchard knows (they survive restarts) and follows their events. */
  start(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = this.#transport.subscribe(
      "download_events",
      (view) => {
        this.live = null;
        this.#apply(view, "event");
      },
      (error) => {
        const failure = toFailure(error);
        if (failure.code !== INVALID_API_KEY) this.live = failure;
      },
    );
    void this.reload();
  }

  async reload(): Promise<void> {
    try {
      const views = await this.#transport.read("list_downloads");
      // Events already heard are newer than this list.
      for (const view of views) if (!this.#entries[view.repo]?.seq) this.#apply(view, "list");
      this.status = "ready";
      this.failure = null;
    } catch (reason) {
      this.failure = toFailure(reason);
      this.status = this.tiles.length > 0 ? "ready" : "error";
    }
  }

  dispose(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    clearInterval(this.#ticker);
    this.#ticker = undefined;
  }

  /** Tiles to show, newest first: not cancelled, not dismissed. */
  get tiles(): Tile[] {
    return Object.values(this.#entries)
      .filter((e) => !e.dismissed && e.view.state !== "cancelled")
      .sort((a, b) => b.order - a.order)
      .map((e) => this.#tile(e));
  }

  /** The tile for a repo, if one is shown. */
  tile(repo: string): Tile | undefined {
    const entry = this.#entries[repo];
    return entry && !entry.dismissed && entry.view.state !== "cancelled" ? this.#tile(entry) : undefined;
  }

  /** Whether this repo finished downloading during this session. */
  finished(repo: string): boolean {
    return this.#entries[repo]?.view.state === "done";
  }

  download(repo: string): Promise<boolean> {
    return this.#act(repo, "start", "start_download");
  }

  pause(repo: string): Promise<boolean> {
    return this.#act(repo, "pause", "pause_download");
  }

  resume(repo: string): Promise<boolean> {
    return this.#act(repo, "resume", "resume_download");
  }

  cancel(repo: string): Promise<boolean> {
    return this.#act(repo, "cancel", "cancel_download");
  }

  /** Retry after a failure is starting it again. */
  retry(repo: string): Promise<boolean> {
    return this.download(repo);
  }

  /** The model was deleted: its finished tile ("in your Library") goes. */
  forget(repo: string): void {
    if (this.#entries[repo]?.view.state === "done") delete this.#entries[repo];
  }

  /** Hides a finished or failed tile (on this page only). */
  dismiss(repo: string): void {
    const entry = this.#entries[repo];
    if (entry) entry.dismissed = true;
    delete this.errors[repo];
  }

  async #act(
    repo: string,
    action: DownloadAction,
    op: "start_download" | "pause_download" | "resume_download" | "cancel_download",
  ): Promise<boolean> {
    if (this.busy[repo]) return false;
    this.busy[repo] = action;
    delete this.errors[repo];
    const seq = this.#entries[repo]?.seq ?? 0;
    try {
      const view = await this.#transport.call(op, { model: repo });
      // The stream may already have said something newer.
      if ((this.#entries[repo]?.seq ?? 0) === seq) this.#apply(view, "call");
      if (action === "start") {
        const entry = this.#entries[repo];
        if (entry) entry.dismissed = false;
      }
      return true;
    } catch (reason) {
      this.errors[repo] = toFailure(reason);
      return false;
    } finally {
      delete this.busy[repo];
    }
  }

  #apply(view: DownloadView, from: "event" | "list" | "call"): void {
    const t = this.#clock();
    this.now = t;
    const entry = this.#entries[view.repo];
    if (!entry) {
      this.#entries[view.repo] = {
        view,
        order: ++this.#order,
        dismissed: false,
        progressAt: t,
        samples: [{ t, bytes: view.downloaded }],
        seq: from === "event" ? 1 : 0,
      };
      if (from === "event" && view.state === "done") this.#onDone(view.repo);
    } else {
      const before = entry.view;
      if (from === "event") entry.seq += 1;
      if (view.downloaded < before.downloaded) {
        // Started over: measure afresh.
        entry.samples = [{ t, bytes: view.downloaded }];
        entry.progressAt = t;
      } else if (view.downloaded > before.downloaded) {
        entry.samples.push({ t, bytes: view.downloaded });
        entry.progressAt = t;
        prune(entry.samples, t);
      }
      if (view.state === "running" && before.state !== "running") {
        // Resumed or started: it has not stalled yet, and the pause is not part of its speed.
        entry.progressAt = t;
        entry.samples = [{ t, bytes: view.downloaded }];
      }
      // A new attempt brings a dismissed tile back.
      if (isActive(view.state) && !isActive(before.state)) entry.dismissed = false;
      entry.view = view;
      if (view.state === "done" && before.state !== "done") this.#onDone(view.repo);
    }
    this.#tick();
  }

  /** Keeps `now` moving while something runs, so speed decays and stalls show. */
  #tick(): void {
    const running = Object.values(this.#entries).some((e) => e.view.state === "running");
    if (running && this.#ticker === undefined) {
      this.#ticker = setInterval(() => {
        this.now = this.#clock();
        if (!Object.values(this.#entries).some((e) => e.view.state === "running")) {
          clearInterval(this.#ticker);
          this.#ticker = undefined;
        }
      }, 1000);
    }
  }

  #tile(entry: Entry): Tile {
    const { view } = entry;
    const now = this.now;
    const running = view.state === "running";
    const stalled = running && now - entry.progressAt >= STALL_MS;
    const speed = running && !stalled ? measure(entry.samples, now) : null;
    const remaining = Math.max(0, view.total - view.downloaded);
    const secondsLeft = speed && speed > 0 && view.total > 0 ? remaining / speed : null;
    const percent = view.total > 0 ? Math.min(100, (view.downloaded / view.total) * 100) : null;
    return { repo: view.repo, view, speed, secondsLeft, stalled, percent };
  }
}

function isActive(state: DownloadView["state"]): boolean {
  return state === "queued" || state === "running" || state === "paused";
}

/** Keeps the samples inside the window, and the last one before it as a baseline. */
function prune(samples: Sample[], now: number): void {
  while (samples.length > 2 && samples[1]!.t <= now - SPEED_WINDOW_MS) samples.shift();
}

/**
 * Bytes per second over the window ending now: the bytes received since the window began
 * (or since the first sample, for a young download) over the time elapsed. No new bytes
 * make it fall, so a slowing transfer never shows a frozen figure.
 */
function measure(samples: Sample[], now: number): number | null {
  const last = samples[samples.length - 1];
  const first = samples[0];
  if (!last || !first) return null;
  const start = Math.max(first.t, now - SPEED_WINDOW_MS);
  if (now - start < 1000) return null;
  // Bytes held at the window's start: the latest sample at or before it.
  let base = first.bytes;
  for (const s of samples) if (s.t <= start) base = s.bytes;
  return Math.max(0, (last.bytes - base) / ((now - start) / 1000));
}
