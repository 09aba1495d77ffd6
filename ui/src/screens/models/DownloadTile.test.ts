// @vitest-environment jsdom
import { act, screen, waitFor, within } from "@testing-library/svelte";
import { afterEach, describe, expect, it, vi } from "vitest";
import { QWEN, SMOL, download, libraryModel } from "../../test/fixtures";
import { fakeOrchard, renderShell } from "../../test/render";
import type { DownloadView } from "../../lib/api/DownloadView";
import { TransportError } from "../../lib/transport";

const MB = 1_000_000;

function tile(name = SMOL): HTMLElement {
  return within(screen.getByRole("list", { name: "Downloads" })).getByRole("listitem", { name });
}

async function emit(transport: ReturnType<typeof fakeOrchard>, view: DownloadView) {
  await act(() => transport.emit("download_events", view));
}

describe("download tile", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("shows a running download's progress, bytes, speed, time left and file", async () => {
    vi.useFakeTimers();
    const transport = fakeOrchard();
    renderShell(transport, "#/models/discover", { fakeTimers: true });
    await vi.advanceTimersByTimeAsync(0);
    await emit(transport, download({ downloaded: 0, total: 100 * MB }));
    await vi.advanceTimersByTimeAsync(2000);
    await emit(transport, download({ downloaded: 20 * MB, total: 100 * MB, file: "model-00001-of-00002.safetensors" }));

    const t = tile();
    const bar = within(t).getByRole("progressbar", { name: "Download progress" });
    expect(bar).toHaveAttribute("aria-valuenow", "20");
    expect(bar).toHaveAttribute("aria-valuemax", "100");
    expect(bar).toHaveAttribute("aria-valuetext", "20%, 20.0 MB of 100.0 MB");
    expect(within(t).getByText("20.0 MB of 100.0 MB")).toHaveAttribute("title", "20,000,000 bytes of 100,000,000 bytes");
    expect(within(t).getByText("10.0 MB/s")).toBeInTheDocument();
    expect(within(t).getByText("8 s left")).toBeInTheDocument();
    expect(within(t).getByText("model-00001-of-00002.safetensors")).toBeInTheDocument();
    expect(within(t).getByText("Downloading")).toBeInTheDocument();
    expect(within(t).getByRole("button", { name: "Pause" })).toBeEnabled();
    expect(within(t).getByRole("button", { name: "Cancel" })).toBeEnabled();
    expect(within(t).queryByRole("button", { name: "Resume" })).toBeNull();
  });

  it("says stalled instead of a frozen speed after 10 s without bytes", async () => {
    vi.useFakeTimers();
    const transport = fakeOrchard();
    renderShell(transport, "#/models/discover", { fakeTimers: true });
    await vi.advanceTimersByTimeAsync(0);
    await emit(transport, download({ downloaded: 0 }));
    await vi.advanceTimersByTimeAsync(1000);
    await emit(transport, download({ downloaded: 5 * MB }));
    expect(within(tile()).getByText("5.0 MB/s")).toBeInTheDocument();

    await act(() => vi.advanceTimersByTimeAsync(10_000));
    const t = tile();
    expect(within(t).getByText("Stalled")).toBeInTheDocument();
    expect(within(t).getByText(/nothing received for 10 s/)).toBeInTheDocument();
    expect(within(t).queryByText(/MB\/s/)).toBeNull();
    expect(within(t).queryByText(/left$/)).toBeNull();

    await emit(transport, download({ downloaded: 6 * MB }));
    expect(within(tile()).queryByText("Stalled")).toBeNull();
  });

  it("pauses and resumes through the right operations", async () => {
    const transport = fakeOrchard()
      .onCall("pause_download", ({ model }) => download({ repo: model, state: "paused", downloaded: 30 * MB, file: null }))
      .onCall("resume_download", ({ model }) => download({ repo: model, state: "running", downloaded: 30 * MB }));
    const { user } = renderShell(transport);
    await waitFor(() => expect(transport.subscriberCount("download_events")).toBe(1));
    await emit(transport, download({ downloaded: 30 * MB }));

    await user.click(within(tile()).getByRole("button", { name: "Pause" }));
    expect(transport.inputs("pause_download")).toEqual([{ model: SMOL }]);
    const paused = tile();
    expect(await within(paused).findByText("Paused")).toBeInTheDocument();
    expect(within(paused).queryByRole("button", { name: "Pause" })).toBeNull();
    expect(within(paused).getByRole("progressbar")).toHaveAttribute("aria-valuenow", "30");

    await user.click(within(paused).getByRole("button", { name: "Resume" }));
    expect(transport.inputs("resume_download")).toEqual([{ model: SMOL }]);
    expect(await within(tile()).findByRole("button", { name: "Pause" })).toBeInTheDocument();
  });

  it("asks inline before cancelling, and Keep downloading or Escape leaves it running", async () => {
    const transport = fakeOrchard().onCall("cancel_download", ({ model }) => download({ repo: model, state: "cancelled" }));
    const confirm = vi.spyOn(window, "confirm");
    const { user } = renderShell(transport);
    await waitFor(() => expect(transport.subscriberCount("download_events")).toBe(1));
    await emit(transport, download({ downloaded: 10 * MB }));

    await user.click(within(tile()).getByRole("button", { name: "Cancel" }));
    let t = tile();
    expect(within(t).getByText("Stop this download?")).toBeInTheDocument();
    expect(within(t).queryByRole("button", { name: "Cancel" })).toBeNull();
    expect(within(t).getByRole("button", { name: "Keep downloading" })).toHaveFocus();
    await user.click(within(t).getByRole("button", { name: "Keep downloading" }));
    expect(within(tile()).getByRole("button", { name: "Cancel" })).toBeInTheDocument();

    await user.click(within(tile()).getByRole("button", { name: "Cancel" }));
    await user.keyboard("{Escape}");
    expect(within(tile()).getByRole("button", { name: "Cancel" })).toBeInTheDocument();
    expect(transport.count("cancel_download")).toBe(0);

    await user.click(within(tile()).getByRole("button", { name: "Cancel" }));
    t = tile();
    await user.click(within(t).getByRole("button", { name: "Cancel download" }));
    expect(transport.inputs("cancel_download")).toEqual([{ model: SMOL }]);
    await waitFor(() => expect(screen.queryByRole("list", { name: "Downloads" })).toBeNull());
    expect(confirm).not.toHaveBeenCalled();
  });

  it("says why a download failed and retries it by starting it again", async () => {
    const transport = fakeOrchard().onCall("start_download", ({ model }) =>
      download({ repo: model, state: "running", downloaded: 0, error: null }),
    );
    const { user } = renderShell(transport);
    await waitFor(() => expect(transport.subscriberCount("download_events")).toBe(1));
    await emit(transport, download({ state: "failed", downloaded: 12 * MB, error: "No space left on device" }));

    const t = tile();
    expect(within(t).getByText("Failed")).toBeInTheDocument();
    expect(within(t).getByRole("alert")).toHaveTextContent("No space left on device");
    expect(within(t).queryByRole("button", { name: "Pause" })).toBeNull();
    await user.click(within(t).getByRole("button", { name: "Retry" }));
    expect(transport.inputs("start_download")).toEqual([{ model: SMOL }]);
    expect(await within(tile()).findByText("Downloading")).toBeInTheDocument();
  });

  it("shows why an action failed", async () => {
    const transport = fakeOrchard().onCall("pause_download", () => {
      throw new TransportError("nothing to pause", "conflict");
    });
    const { user } = renderShell(transport);
    await waitFor(() => expect(transport.subscriberCount("download_events")).toBe(1));
    await emit(transport, download());
    await user.click(within(tile()).getByRole("button", { name: "Pause" }));
    expect(await within(tile()).findByRole("alert")).toHaveTextContent("nothing to pause");
  });

  it("says a finished download is in the Library, refreshes the Library, and can be dismissed", async () => {
    let library = [libraryModel({ id: QWEN })];
    const transport = fakeOrchard().onRead("list_library", () => library);
    const { user } = renderShell(transport);
    await waitFor(() => expect(transport.count("list_library")).toBe(1));
    await emit(transport, download({ downloaded: 50 * MB }));

    library = [libraryModel({ id: QWEN }), libraryModel({ id: SMOL })];
    await emit(transport, download({ state: "done", downloaded: 99 * MB, total: 100 * MB, file: null }));
    const t = tile();
    expect(within(t).getByText("Downloaded")).toBeInTheDocument();
    expect(within(t).getByText(/in your Library/)).toBeInTheDocument();
    expect(within(t).queryByRole("button", { name: "Cancel" })).toBeNull();
    // Even when the last progress event was short of the total, a finished bar is full.
    expect(within(t).getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100");
    await waitFor(() => expect(transport.count("list_library")).toBe(2));

    await user.click(within(t).getByRole("button", { name: "Dismiss" }));
    expect(screen.queryByRole("list", { name: "Downloads" })).toBeNull();
    await user.click(screen.getByRole("tab", { name: "Library" }));
    const mine = screen.getByRole("list", { name: "Library" });
    expect(within(mine).getByRole("listitem", { name: SMOL })).toBeInTheDocument();
  });

  it("shows the downloads that continued across a restart", async () => {
    const transport = fakeOrchard().onRead("list_downloads", [
      download({ repo: QWEN, state: "running", downloaded: 40 * MB }),
      download({ repo: SMOL, state: "paused", downloaded: 10 * MB, file: null }),
    ]);
    renderShell(transport, "#/models/library");
    const list = await screen.findByRole("list", { name: "Downloads" });
    expect(within(list).getByRole("listitem", { name: QWEN })).toBeInTheDocument();
    expect(within(within(list).getByRole("listitem", { name: SMOL })).getByRole("button", { name: "Resume" })).toBeInTheDocument();
    expect(transport.subscriberCount("download_events")).toBe(1);
  });

  it("updates a tile in place, without remounting it", async () => {
    const transport = fakeOrchard();
    renderShell(transport);
    await waitFor(() => expect(transport.subscriberCount("download_events")).toBe(1));
    await emit(transport, download({ downloaded: 1 * MB }));
    const before = tile();
    const bar = within(before).getByRole("progressbar");
    await emit(transport, download({ downloaded: 2 * MB }));
    expect(tile()).toBe(before);
    expect(within(before).getByRole("progressbar")).toBe(bar);
    expect(bar).toHaveAttribute("aria-valuenow", "2");
  });
});
