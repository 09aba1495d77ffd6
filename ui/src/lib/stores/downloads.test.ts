import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeTransport, deferred } from "../../test/fake-transport";
import { QWEN, SMOL, download } from "../../test/fixtures";
import type { DownloadView } from "../api/DownloadView";
import { TransportError } from "../transport";
import { DownloadsStore } from "./downloads.svelte";

const MB = 1_000_000;

describe("DownloadsStore", () => {
  let transport: FakeTransport;
  let store: DownloadsStore;
  let done: string[];

  beforeEach(() => {
    vi.useFakeTimers({ now: new Date("2025-06-01T12:00:00Z") });
    transport = new FakeTransport().onRead("list_downloads", []);
    done = [];
    store = new DownloadsStore(transport, { onDone: (repo) => done.push(repo) });
  });

  afterEach(() => {
    store.dispose();
    vi.useRealTimers();
  });

  async function started(): Promise<void> {
    store.start();
    await vi.advanceTimersByTimeAsync(0);
  }

  it("measures speed and time left from when bytes arrived", async () => {
    await started();
    transport.emit("download_events", download({ downloaded: 0, total: 100 * MB }));
    await vi.advanceTimersByTimeAsync(1000);
    transport.emit("download_events", download({ downloaded: 10 * MB, total: 100 * MB }));
    await vi.advanceTimersByTimeAsync(1000);
    transport.emit("download_events", download({ downloaded: 20 * MB, total: 100 * MB }));
    const tile = store.tile(SMOL)!;
    expect(tile.percent).toBe(20);
    expect(tile.speed).toBe(10 * MB);
    expect(tile.secondsLeft).toBe(8);
    expect(tile.stalled).toBe(false);
  });

  it("lets the speed fall when bytes stop, and says stalled after 10 s without bytes", async () => {
    await started();
    transport.emit("download_events", download({ downloaded: 0 }));
    await vi.advanceTimersByTimeAsync(2000);
    transport.emit("download_events", download({ downloaded: 20 * MB }));
    expect(store.tile(SMOL)!.speed).toBe(10 * MB);

    // Nothing arrives; the page's clock keeps ticking on its own.
    await vi.advanceTimersByTimeAsync(3000);
    expect(store.tile(SMOL)!.speed).toBe(4 * MB); // 20 MB over the last 5 s
    expect(store.tile(SMOL)!.stalled).toBe(false);
    await vi.advanceTimersByTimeAsync(6000);
    expect(store.tile(SMOL)!.stalled).toBe(false); // 9 s
    await vi.advanceTimersByTimeAsync(1000);
    const tile = store.tile(SMOL)!;
    expect(tile.stalled).toBe(true);
    expect(tile.speed).toBeNull();
    expect(tile.secondsLeft).toBeNull();

    // The same byte count again (a keep-alive, a reconnect) is no progress.
    transport.emit("download_events", download({ downloaded: 20 * MB }));
    expect(store.tile(SMOL)!.stalled).toBe(true);
    transport.emit("download_events", download({ downloaded: 21 * MB }));
    expect(store.tile(SMOL)!.stalled).toBe(false);
  });

  it("never calls a paused download stalled, and measures afresh when it resumes", async () => {
    await started();
    transport.emit("download_events", download({ state: "paused", downloaded: 30 * MB, file: null }));
    await vi.advanceTimersByTimeAsync(60_000);
    expect(store.tile(SMOL)!.stalled).toBe(false);
    transport.emit("download_events", download({ state: "running", downloaded: 30 * MB }));
    await vi.advanceTimersByTimeAsync(9000);
    expect(store.tile(SMOL)!.stalled).toBe(false);
  });

  it("shows the downloads Orchard already had at start, and the stream keeps them current", async () => {
    const list = deferred<DownloadView[]>();
    transport.onRead("list_downloads", () => list.promise);
    await started();
    expect(store.status).toBe("loading");
    // An event arrives before the list: the list must not take it back.
    transport.emit("download_events", download({ repo: QWEN, downloaded: 50 * MB }));
    list.resolve([download({ repo: QWEN, downloaded: 40 * MB }), download({ state: "paused", downloaded: 5 })]);
    await vi.advanceTimersByTimeAsync(0);
    expect(store.status).toBe("ready");
    expect(store.tile(QWEN)!.view.downloaded).toBe(50 * MB);
    expect(store.tile(SMOL)!.view.state).toBe("paused");
    expect(transport.count("list_downloads")).toBe(1);
    expect(transport.subscriberCount("download_events")).toBe(1);
  });

  it("puts the newest download first", async () => {
    await started();
    transport.emit("download_events", download({ repo: SMOL }));
    transport.emit("download_events", download({ repo: QWEN }));
    transport.emit("download_events", download({ repo: SMOL, downloaded: 5 }));
    expect(store.tiles.map((t) => t.repo)).toEqual([QWEN, SMOL]);
  });

  it("tells the library once when a download finishes; a finished tile can be dismissed", async () => {
    await started();
    transport.emit("download_events", download({ downloaded: 99 }));
    transport.emit("download_events", download({ state: "done", downloaded: 100 * MB, file: null }));
    transport.emit("download_events", download({ state: "done", downloaded: 100 * MB, file: null }));
    expect(done).toEqual([SMOL]);
    expect(store.finished(SMOL)).toBe(true);
    store.dismiss(SMOL);
    expect(store.tile(SMOL)).toBeUndefined();
    expect(store.tiles).toEqual([]);
  });

  it("drops a cancelled download's tile", async () => {
    await started();
    transport.emit("download_events", download());
    transport.emit("download_events", download({ state: "cancelled" }));
    expect(store.tile(SMOL)).toBeUndefined();
  });

  it("calls the operation each action names, with the repo", async () => {
    const answer = (state: DownloadView["state"]) => (input: { model: string }) =>
      download({ repo: input.model, state });
    transport
      .onCall("start_download", answer("queued"))
      .onCall("pause_download", answer("paused"))
      .onCall("resume_download", answer("running"))
      .onCall("cancel_download", answer("cancelled"));
    await started();
    expect(await store.download(SMOL)).toBe(true);
    expect(store.tile(SMOL)!.view.state).toBe("queued");
    await store.pause(SMOL);
    expect(store.tile(SMOL)!.view.state).toBe("paused");
    await store.resume(SMOL);
    await store.retry(SMOL);
    await store.cancel(SMOL);
    expect(store.tile(SMOL)).toBeUndefined();
    expect(transport.recorded.filter((r) => r.input).map((r) => [r.op, r.input])).toEqual([
      ["start_download", { model: SMOL }],
      ["pause_download", { model: SMOL }],
      ["resume_download", { model: SMOL }],
      ["start_download", { model: SMOL }],
      ["cancel_download", { model: SMOL }],
    ]);
  });

  it("keeps why an action failed, with its code", async () => {
    transport.onCall("start_download", () => {
      throw new TransportError("meta-llama/Llama-3 is gated", "hub_auth");
    });
    await started();
    expect(await store.download("meta-llama/Llama-3")).toBe(false);
    expect(store.errors["meta-llama/Llama-3"]).toEqual({ message: "meta-llama/Llama-3 is gated", code: "hub_auth" });
    expect(store.tile("meta-llama/Llama-3")).toBeUndefined();
  });

  it("ignores an action's answer when the stream has already said something newer", async () => {
    const answer = deferred<DownloadView>();
    transport.onCall("start_download", () => answer.promise);
    await started();
    const pending = store.download(SMOL);
    transport.emit("download_events", download({ state: "running", downloaded: 7 * MB }));
    answer.resolve(download({ state: "queued", downloaded: 0 }));
    await pending;
    expect(store.tile(SMOL)!.view).toMatchObject({ state: "running", downloaded: 7 * MB });
  });

  it("says when live updates are interrupted, and clears it on the next event", async () => {
    await started();
    transport.fail("download_events", new TransportError("Live updates were interrupted", "unreachable"));
    expect(store.live?.message).toBe("Live updates were interrupted");
    transport.emit("download_events", download());
    expect(store.live).toBeNull();
  });

  it("stops listening and ticking when disposed", async () => {
    await started();
    transport.emit("download_events", download());
    store.dispose();
    expect(transport.subscriberCount("download_events")).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});
