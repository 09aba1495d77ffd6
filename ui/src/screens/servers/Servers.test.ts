// @vitest-environment jsdom
import { screen, waitFor, within } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { QWEN, SMOL, facts, libraryModel, serverTile, serversView } from "../../test/fixtures";
import { deferred } from "../../test/fake-transport";
import { fakeOrchard, renderShell } from "../../test/render";
import { TransportError } from "../../lib/transport";
import type { ServersView } from "../../lib/api/ServersView";

const tileOf = (model: string) => screen.findByRole("listitem", { name: model });

describe("Servers", () => {
  it("shows a tile per loaded model with its figures, and meters read from them", async () => {
    const transport = fakeOrchard().onRead("list_servers", serversView([serverTile()]));
    renderShell(transport, "#/servers");
    const list = await screen.findByRole("list", { name: "Servers" });
    const tile = within(list).getByRole("listitem", { name: SMOL });

    const memory = within(tile).getByRole("meter", { name: "Memory" });
    expect(memory).toHaveAttribute("aria-valuenow", "100000000");
    expect(memory).toHaveAttribute("aria-valuemin", "0");
    expect(memory).toHaveAttribute("aria-valuemax", "12000000000");
    expect(memory).toHaveAttribute("aria-valuetext", "100.0 MB of 12.0 GB budget");
    expect(memory.getAttribute("title")).toContain("KV cache: 15,000,000 bytes");
    expect(memory.getAttribute("title")).toContain("Memory in this machine: 16,000,000,000 bytes");

    const cpu = within(tile).getByRole("meter", { name: "CPU" });
    expect(cpu).toHaveAttribute("aria-valuenow", "200");
    expect(cpu).toHaveAttribute("aria-valuemax", "800");
    expect(cpu).toHaveAttribute("aria-valuetext", "25% of 8 cores");

    // On the CPU backend there is no GPU meter: the tile says where the model computes.
    expect(within(tile).queryByRole("meter", { name: "GPU" })).toBeNull();
    expect(within(tile).getByText(/Computes on the CPU backend/)).toBeInTheDocument();

    expect(within(tile).getByText("Running")).toBeInTheDocument();
    expect(within(tile).getByText("3 min")).toBeInTheDocument();
    expect(within(tile).getByText("2 running, 1 queued")).toBeInTheDocument();
    expect(within(tile).getByText("42 tok/s")).toBeInTheDocument();
    expect(within(tile).getByText("12.3k tokens")).toHaveAttribute("title", "12,345 tokens since it loaded");
    expect(within(tile).getByText("63%")).toHaveAttribute(
      "title",
      "630 of 1,000 prompt tokens came from the cache",
    );
    for (const name of ["Stop", "Restart", "Chat"]) {
      expect(within(tile).getByRole("button", { name })).toBeEnabled();
    }
    // Quantized weights as stored: no word about the CPU fast path.
    expect(within(tile).queryByText(/CPU fast path/)).toBeNull();

    const strip = screen.getByRole("region", { name: "This machine" });
    expect(within(strip).getByText("9.0 GB of 16.0 GB used")).toBeInTheDocument();
    expect(within(strip).getByText("1.5 GB")).toBeInTheDocument();
    expect(within(strip).getByText("12.0 GB")).toBeInTheDocument();
    expect(within(strip).getByText("25% of 8 cores")).toBeInTheDocument();
    expect(within(strip).getByRole("meter", { name: "System memory" })).toHaveAttribute("aria-valuenow", "9000000000");
  });

  it("says when a model runs dequantized to float32 on the CPU", async () => {
    const transport = fakeOrchard().onRead("list_servers", serversView([serverTile({ cpu_fast_path: true })]));
    renderShell(transport, "#/servers");
    const tile = await tileOf(SMOL);
    const weights = within(tile).getByText("float32 (CPU fast path)");
    expect(weights.getAttribute("title")).toContain("cpu_fast_path");
  });

  it("shows the GPU's active memory against the recommended working set, or the machine's memory", async () => {
    const gpu = { active_bytes: 2_000_000_000, peak_bytes: 3_000_000_000, cache_bytes: 500_000_000 };
    const transport = fakeOrchard().onRead(
      "list_servers",
      serversView([serverTile({ prompt_cache_hit_rate: null, prompt_tokens: 0, cached_prompt_tokens: 0 })], {
        backend: "metal",
        gpu: { ...gpu, recommended_working_set_bytes: 10_000_000_000 },
      }),
    );
    renderShell(transport, "#/servers");
    const tile = await tileOf(SMOL);
    const meter = within(tile).getByRole("meter", { name: "GPU" });
    expect(meter).toHaveAttribute("aria-valuenow", "2000000000");
    expect(meter).toHaveAttribute("aria-valuemax", "10000000000");
    expect(meter).toHaveAttribute("aria-valuetext", "2.0 GB of 10.0 GB recommended working set");
    expect(meter.getAttribute("title")).toContain("Peak: 3,000,000,000 bytes");
    expect(within(tile).queryByText(/CPU backend/)).toBeNull();
    // No prompt yet: no hit rate to show.
    expect(within(tile).getByText("—")).toHaveAttribute("title", "No prompt yet");

    transport.emit(
      "server_events",
      serversView([serverTile()], { backend: "cuda", gpu: { ...gpu, recommended_working_set_bytes: null } }),
    );
    await waitFor(() => expect(meter).toHaveAttribute("aria-valuemax", "16000000000"));
    expect(meter).toHaveAttribute("aria-valuetext", "2.0 GB of 16.0 GB memory");
  });

  it("updates tiles in place from the stream: same element, focus and scroll kept", async () => {
    const transport = fakeOrchard().onRead("list_servers", serversView([serverTile(), serverTile({ model: QWEN })]));
    const { user } = renderShell(transport, "#/servers");
    const tile = await tileOf(SMOL);
    expect(transport.subscriberCount("server_events")).toBe(1);
    const scroller = screen.getByRole("heading", { name: "Servers", level: 1 }).parentElement!;
    scroller.scrollTop = 150;
    const stop = within(tile).getByRole("button", { name: "Stop" });
    stop.focus();

    transport.emit(
      "server_events",
      serversView([
        serverTile({ tokens_per_second: 55.2, memory_bytes: 250_000_000, uptime_seconds: 240, active_requests: 3 }),
        serverTile({ model: QWEN }),
      ]),
    );
    await within(tile).findByText("55 tok/s");
    expect(screen.getByRole("listitem", { name: SMOL })).toBe(tile);
    expect(within(tile).getByRole("meter", { name: "Memory" })).toHaveAttribute("aria-valuenow", "250000000");
    expect(within(tile).getByText("4 min")).toBeInTheDocument();
    expect(within(tile).getByText("3 running, 1 queued")).toBeInTheDocument();
    expect(stop).toHaveFocus();
    expect(within(tile).getByRole("button", { name: "Stop" })).toBe(stop);
    expect(screen.getByRole("heading", { name: "Servers", level: 1 }).parentElement).toBe(scroller);
    expect(scroller.scrollTop).toBe(150);

    // Leaving the screen stops listening; coming back listens again.
    await user.click(screen.getByRole("link", { name: "Chat" }));
    expect(transport.subscriberCount("server_events")).toBe(0);
    await user.click(screen.getByRole("link", { name: "Servers" }));
    expect(transport.subscriberCount("server_events")).toBe(1);
  });

  it("draws each running model's speed of the last seconds as a sparkline", async () => {
    const transport = fakeOrchard().onRead("list_servers", serversView([serverTile()]));
    renderShell(transport, "#/servers");
    const tile = await tileOf(SMOL);
    expect(within(tile).queryByRole("img", { name: /^Speed over/ })).toBeNull();
    for (const tokens_per_second of [12, 30.4, 21]) {
      transport.emit("server_events", serversView([serverTile({ tokens_per_second })]));
    }
    const spark = await within(tile).findByRole("img", { name: "Speed over the last 3 seconds: 12 tok/s to 30 tok/s" });
    expect(spark.querySelector("polyline")?.getAttribute("points")?.split(" ")).toHaveLength(3);

    // A restart begins a new series.
    transport.emit("server_events", serversView([serverTile({ state: "restarting" })]));
    transport.emit("server_events", serversView([serverTile({ tokens_per_second: 5 })]));
    await waitFor(() => expect(within(tile).queryByRole("img", { name: /^Speed over/ })).toBeNull());
  });

  it("keeps a restarting model's tile, and shows why a load failed with Retry", async () => {
    const transport = fakeOrchard()
      .onRead("list_servers", serversView([serverTile()]))
      .onCall("start_server", () => serversView([serverTile({ uptime_seconds: 1 })]));
    const { user } = renderShell(transport, "#/servers");
    const tile = await tileOf(SMOL);

    transport.emit("server_events", serversView([serverTile({ state: "restarting" })]));
    await within(tile).findByText("Restarting");
    expect(screen.getByRole("listitem", { name: SMOL })).toBe(tile);
    expect(within(tile).getByRole("button", { name: "Stop" })).toBeDisabled();
    expect(within(tile).getByRole("button", { name: "Restart" })).toBeDisabled();

    const why = "config.json: unknown model_type \"mamba9\"";
    const log = ["INFO loading dir=/models/smol weights_mib=76", `WARN the load failed error=${why}`];
    transport.emit("server_events", serversView([serverTile({ state: "failed", error: why, log })]));
    expect(await within(tile).findByRole("alert")).toHaveTextContent(why);
    // The load's log lines, folded under the reason.
    const lines = within(tile).getByRole("log", { name: `Log of the load of ${SMOL}` });
    expect(lines.textContent).toBe(log.join("\n"));
    expect(within(tile).getByText("Log of the load (2 lines)")).toBeInTheDocument();
    expect(screen.getByRole("listitem", { name: SMOL })).toBe(tile);
    expect(within(tile).queryByRole("button", { name: "Stop" })).toBeNull();

    await user.click(within(tile).getByRole("button", { name: "Retry" }));
    expect(transport.inputs("start_server")).toEqual([{ model: SMOL }]);
    expect(await within(tile).findByText("Running")).toBeInTheDocument();
    expect(within(tile).queryByRole("alert")).toBeNull();
  });

  it("starts the model chosen in the searchable dropdown; its tile says Loading until it runs", async () => {
    const answer = deferred<ServersView>();
    const transport = fakeOrchard()
      .onRead("list_library", [
        libraryModel(),
        libraryModel({ id: QWEN }),
        libraryModel({ id: "mlx-community/Mamba-1B", facts: facts({ supported: false }) }),
      ])
      .onCall("start_server", () => answer.promise);
    const { user } = renderShell(transport, "#/servers");
    expect(await screen.findByText("No model is loaded")).toBeInTheDocument();

    const box = screen.getByRole("combobox", { name: "Model to start" });
    const start = screen.getByRole("button", { name: "Start" });
    expect(start).toBeDisabled();
    await user.click(box);
    const listbox = screen.getByRole("listbox");
    await waitFor(() => expect(within(listbox).getAllByRole("option")).toHaveLength(3));
    await user.type(box, "qwen");
    expect(within(listbox).getAllByRole("option").map((o) => o.textContent?.trim())).toEqual([QWEN]);
    await user.click(within(listbox).getByRole("option", { name: QWEN }));
    expect(box).toHaveValue(QWEN);
    expect(box).toHaveAttribute("aria-expanded", "false");

    await user.click(start);
    expect(transport.inputs("start_server")).toEqual([{ model: QWEN }]);
    const tile = await tileOf(QWEN);
    expect(within(tile).getByText("Loading…")).toBeInTheDocument();
    expect(box).toHaveValue("");

    answer.resolve(serversView([serverTile({ model: QWEN })]));
    expect(await within(tile).findByText("Running")).toBeInTheDocument();
    expect(screen.getByRole("listitem", { name: QWEN })).toBe(tile);
    // A model already running is not offered again.
    await user.click(box);
    expect(within(listbox).queryByRole("option", { name: QWEN })).toBeNull();
  });

  it("chooses and starts with the keyboard alone; an unsupported model cannot be started", async () => {
    const transport = fakeOrchard()
      .onRead("list_library", [
        libraryModel({ id: "mlx-community/Mamba-1B", facts: facts({ supported: false }) }),
        libraryModel(),
      ])
      .onCall("start_server", ({ model }) => serversView([serverTile({ model })]));
    const { user } = renderShell(transport, "#/servers");
    const box = await screen.findByRole("combobox", { name: "Model to start" });
    await waitFor(() => expect(transport.count("list_library")).toBeGreaterThan(0));
    box.focus();
    await user.keyboard("{ArrowDown}{ArrowDown}");
    const first = screen.getByRole("option", { name: "mlx-community/Mamba-1B" });
    expect(first).toHaveAttribute("aria-selected", "true");
    expect(first).toHaveAttribute("aria-disabled", "true");
    expect(box).toHaveAttribute("aria-activedescendant", first.id);
    await user.keyboard("{Enter}");
    expect(box).toHaveValue("");

    await user.keyboard("{ArrowDown}{Enter}");
    expect(box).toHaveValue(SMOL);
    await user.keyboard("{Enter}");
    expect(transport.inputs("start_server")).toEqual([{ model: SMOL }]);
    expect(await tileOf(SMOL)).toBeInTheDocument();
  });

  it("Stop and Restart call their operations, and the Library hears of it", async () => {
    const transport = fakeOrchard()
      .onRead("list_servers", serversView([serverTile()]))
      .onCall("restart_server", () => serversView([serverTile({ uptime_seconds: 2 })]))
      .onCall("stop_server", () => serversView([]));
    const { user } = renderShell(transport, "#/servers");
    const tile = await tileOf(SMOL);
    const libraryReads = transport.count("list_library");

    await user.click(within(tile).getByRole("button", { name: "Restart" }));
    expect(transport.inputs("restart_server")).toEqual([{ model: SMOL }]);
    expect(await within(tile).findByText("2 s")).toBeInTheDocument();

    await user.click(within(tile).getByRole("button", { name: "Stop" }));
    expect(transport.inputs("stop_server")).toEqual([{ model: SMOL }]);
    expect(await screen.findByText("No model is loaded")).toBeInTheDocument();
    expect(transport.count("list_library")).toBe(libraryReads + 2);
  });

  it("says why a Start failed when Orchard made no tile for it", async () => {
    const transport = fakeOrchard()
      .onRead("list_library", [libraryModel()])
      .onCall("start_server", () => {
        throw new TransportError("not enough memory: needs 90 GB, budget 12 GB", "conflict");
      });
    const { user } = renderShell(transport, "#/servers");
    const box = await screen.findByRole("combobox", { name: "Model to start" });
    await waitFor(() => expect(transport.count("list_library")).toBeGreaterThan(0));
    await user.type(box, SMOL);
    await user.click(screen.getByRole("button", { name: "Start" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(
      `Couldn't start ${SMOL}: not enough memory: needs 90 GB, budget 12 GB`,
    );
    expect(screen.getByText("No model is loaded")).toBeInTheDocument();
  });

  it("dismisses a failed load's tile", async () => {
    let view = serversView([serverTile({ state: "failed", error: "weights missing" })]);
    const transport = fakeOrchard()
      .onRead("list_servers", () => view)
      .onCall("stop_server", () => {
        view = serversView([]);
        throw new TransportError(`${SMOL} is not loaded`, "not_found");
      });
    const { user } = renderShell(transport, "#/servers");
    const tile = await tileOf(SMOL);
    await user.click(within(tile).getByRole("button", { name: "Dismiss" }));
    expect(transport.inputs("stop_server")).toEqual([{ model: SMOL }]);
    expect(await screen.findByText("No model is loaded")).toBeInTheDocument();
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("when nothing is loaded, leads to the Library", async () => {
    const { user } = renderShell(fakeOrchard(), "#/servers");
    expect(await screen.findByText("No model is loaded")).toBeInTheDocument();
    expect(screen.getByRole("combobox", { name: "Model to start" })).toBeInTheDocument();
    await user.click(screen.getByRole("link", { name: "Open the Library" }));
    expect(window.location.hash).toBe("#/models/library");
    expect(screen.getByRole("tab", { name: "Library" })).toHaveAttribute("aria-selected", "true");
  });

  it("says when the tiles cannot be read, and when live figures are interrupted", async () => {
    let fail = true;
    const transport = fakeOrchard().onRead("list_servers", () => {
      if (fail) throw new TransportError("Orchard is not answering", "unreachable");
      return serversView([serverTile()]);
    });
    const { user } = renderShell(transport, "#/servers");
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Couldn't read the loaded models");
    expect(alert).toHaveTextContent("Orchard is not answering");
    fail = false;
    await user.click(within(alert).getByRole("button", { name: "Retry" }));
    expect(await tileOf(SMOL)).toBeInTheDocument();

    transport.fail("server_events", new TransportError("connection reset", "unreachable"));
    expect(await screen.findByText(/Live figures are interrupted \(connection reset\)/)).toBeInTheDocument();
    transport.emit("server_events", serversView([serverTile()]));
    await waitFor(() => expect(screen.queryByText(/Live figures are interrupted/)).toBeNull());
  });
});
