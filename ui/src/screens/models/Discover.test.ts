// @vitest-environment jsdom
import { act, screen, waitFor, within } from "@testing-library/svelte";
import { afterEach, describe, expect, it, vi } from "vitest";
import { deferred } from "../../test/fake-transport";
import { QWEN, SMOL, details, download, libraryModel, result, results, settings } from "../../test/fixtures";
import { fakeOrchard, renderShell } from "../../test/render";
import type { SearchResults } from "../../lib/api/SearchResults";
import { TransportError } from "../../lib/transport";

const GATED = "meta-llama/Llama-3.2-1B-Instruct";

function entry(name: string): HTMLElement {
  return screen.getByRole("listitem", { name });
}

describe("Discover", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("lists each result with its numbers, badges and memory fit", async () => {
    const transport = fakeOrchard().onCall("search_models", () =>
      results([
        result({ id: SMOL, downloads: 12_345, likes: 42, size_bytes: 76_300_000 }),
        result({
          id: QWEN,
          architecture: "qwen2_5_vl",
          quantization_bits: 8,
          capabilities: ["vision", "tool_use", "thinking"],
          fit: "tight",
        }),
        result({
          id: "mlx-community/bge-small-en",
          architecture: "bert",
          quantization_bits: null,
          capabilities: ["embeddings"],
          supported: false,
          fit: "wont_fit",
        }),
      ]),
    );
    renderShell(transport);

    const smol = await screen.findByRole("listitem", { name: SMOL });
    expect(within(smol).getByText("12.3k")).toHaveAttribute("title", "12,345 downloads");
    expect(within(smol).getByText("42").closest("[title]")).toHaveAttribute("title", "42 likes");
    expect(within(smol).getByText("76.3 MB")).toHaveAttribute("title", "76,300,000 bytes");
    expect(within(smol).getByText(/^updated /)).toBeInTheDocument();
    expect(within(smol).getByText("llama")).toBeInTheDocument();
    expect(within(smol).getByText("4-bit")).toBeInTheDocument();
    expect(within(smol).getByText("Fits in memory")).toBeInTheDocument();
    expect(within(smol).queryByText("Not supported yet")).toBeNull();

    const qwen = entry(QWEN);
    for (const text of ["qwen2_5_vl", "8-bit", "Vision", "Tools", "Thinking", "Tight fit"]) {
      expect(within(qwen).getByText(text)).toBeInTheDocument();
    }
    const bge = entry("mlx-community/bge-small-en");
    for (const text of ["Embeddings", "Not supported yet", "Won't fit"]) {
      expect(within(bge).getByText(text)).toBeInTheDocument();
    }
    expect(screen.getByRole("status", { name: "" }).textContent).toMatch(/3 models/);
  });

  it("searches mlx-community by downloads at first, and sends each filter as it changes", async () => {
    const transport = fakeOrchard();
    const { user } = renderShell(transport);
    await waitFor(() => expect(transport.count("search_models")).toBe(1));
    expect(transport.inputs("search_models")[0]).toEqual({
      text: null,
      author: "mlx-community",
      sort: "downloads",
      architecture: null,
      bits: null,
      capabilities: [],
      fits_only: false,
    });

    await user.selectOptions(screen.getByRole("combobox", { name: "Sort by" }), "Recently updated");
    await user.selectOptions(screen.getByRole("combobox", { name: "Quantization" }), "4-bit");
    await user.click(screen.getByRole("checkbox", { name: "Vision" }));
    await user.click(screen.getByRole("checkbox", { name: "Tool use" }));
    await user.click(screen.getByRole("checkbox", { name: "Fits in memory" }));
    await waitFor(() =>
      expect(transport.inputs("search_models").at(-1)).toEqual({
        text: null,
        author: "mlx-community",
        sort: "last_modified",
        architecture: null,
        bits: 4,
        capabilities: ["vision", "tool_use"],
        fits_only: true,
      }),
    );

    // An empty author searches every author; architecture is free text.
    await user.clear(screen.getByRole("textbox", { name: "Author" }));
    await user.type(screen.getByRole("combobox", { name: "Architecture" }), "qwen3");
    await waitFor(() => expect(transport.inputs("search_models").at(-1)).toMatchObject({ author: null, architecture: "qwen3" }));
  });

  it("waits for a pause in typing before it searches", async () => {
    vi.useFakeTimers();
    const transport = fakeOrchard();
    const { user } = renderShell(transport, "#/models/discover", { fakeTimers: true });
    await vi.advanceTimersByTimeAsync(0);
    expect(transport.count("search_models")).toBe(1);

    const box = screen.getByRole("searchbox", { name: "Search models" });
    await user.type(box, "qwen");
    await vi.advanceTimersByTimeAsync(250);
    expect(transport.count("search_models")).toBe(1);
    await user.type(box, "3");
    await vi.advanceTimersByTimeAsync(250);
    expect(transport.count("search_models")).toBe(1);
    await vi.advanceTimersByTimeAsync(60);
    expect(transport.count("search_models")).toBe(2);
    expect(transport.inputs("search_models")[1]!.text).toBe("qwen3");
    // Enter searches at once.
    await user.type(box, "{Enter}");
    await vi.advanceTimersByTimeAsync(0);
    expect(transport.count("search_models")).toBe(3);
  });

  it("shows the newest search's results even when an older answer arrives last", async () => {
    const slow = deferred<SearchResults>();
    let n = 0;
    const transport = fakeOrchard().onCall("search_models", () => {
      n += 1;
      return n === 2 ? slow.promise : results([result({ id: n === 1 ? SMOL : QWEN })]);
    });
    const { stores } = renderShell(transport);
    await screen.findByRole("listitem", { name: SMOL });
    const older = stores.search.search();
    const newer = stores.search.search();
    await newer;
    slow.resolve(results([result({ id: "mlx-community/stale" })]));
    await older;
    await screen.findByRole("listitem", { name: QWEN });
    expect(screen.queryByRole("listitem", { name: "mlx-community/stale" })).toBeNull();
  });

  it("says it is searching, then that nothing matched, and offers to clear filters", async () => {
    const answer = deferred<SearchResults>();
    const transport = fakeOrchard().onCall("search_models", () => answer.promise);
    const { user } = renderShell(transport);
    expect(await screen.findByText("Searching Hugging Face…")).toBeInTheDocument();
    answer.resolve(results([]));
    expect(await screen.findByText("No models found")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Clear filters" })).toBeNull();

    transport.onCall("search_models", () => results([]));
    await user.click(screen.getByRole("checkbox", { name: "Thinking" }));
    await user.click(await screen.findByRole("button", { name: "Clear filters" }));
    await waitFor(() => expect(transport.inputs("search_models").at(-1)!.capabilities).toEqual([]));
    expect(screen.getByRole("checkbox", { name: "Thinking" })).not.toBeChecked();
  });

  it("says what failed and retries", async () => {
    const transport = fakeOrchard().onCall("search_models", () => {
      throw new TransportError("the Hub answered 500", "internal");
    });
    const { user } = renderShell(transport);
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Search failed");
    expect(alert).toHaveTextContent("the Hub answered 500");
    transport.onCall("search_models", () => results([result()]));
    await user.click(within(alert).getByRole("button", { name: "Retry" }));
    expect(await screen.findByRole("listitem", { name: SMOL })).toBeInTheDocument();
  });

  it("says the Hub cannot be reached, and the Library still works", async () => {
    const transport = fakeOrchard()
      .onCall("search_models", () => {
        throw new TransportError("huggingface.co: connection refused", "hub_unreachable");
      })
      .onRead("list_library", [libraryModel()]);
    const { user } = renderShell(transport);
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Can't reach Hugging Face");
    expect(alert).toHaveTextContent("Your Library still works");
    await user.click(within(alert).getByRole("button", { name: "Open Library" }));
    expect(screen.getByRole("tab", { name: "Library" })).toHaveAttribute("aria-selected", "true");
    expect(await screen.findByRole("listitem", { name: SMOL })).toBeInTheDocument();
  });

  it("says offline mode is on", async () => {
    const transport = fakeOrchard().onRead("get_settings", settings({ offline: true }));
    renderShell(transport);
    expect(await screen.findByText("Offline mode is on")).toBeInTheDocument();
  });

  it("leads a gated model without a token to Settings", async () => {
    const transport = fakeOrchard().onCall("search_models", () => results([result({ id: GATED, gated: true })]));
    const { user } = renderShell(transport);
    const card = await screen.findByRole("listitem", { name: GATED });
    expect(within(card).getByText("Gated")).toBeInTheDocument();
    expect(await within(card).findByText(/needs a Hugging Face token/)).toBeInTheDocument();
    await user.click(within(card).getByRole("button", { name: "Open Settings" }));
    expect(await screen.findByRole("heading", { name: "Settings", level: 1 })).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Settings" })).toHaveAttribute("aria-current", "page");
  });

  it("does not ask for a token the user has already set", async () => {
    const transport = fakeOrchard()
      .onRead("get_settings", settings({ hf_token_set: true }))
      .onCall("search_models", () => results([result({ id: GATED, gated: true })]));
    renderShell(transport);
    const card = await screen.findByRole("listitem", { name: GATED });
    await waitFor(() => expect(transport.count("get_settings")).toBe(1));
    expect(within(card).queryByText(/needs a Hugging Face token/)).toBeNull();
  });

  it("explains a download the Hub refused for want of a token", async () => {
    const transport = fakeOrchard()
      .onRead("get_settings", settings({ hf_token_set: true }))
      .onCall("search_models", () => results([result({ id: GATED })]))
      .onCall("start_download", () => {
        throw new TransportError("401 from the Hub: this repo is gated", "hub_auth");
      });
    const { user } = renderShell(transport);
    const card = await screen.findByRole("listitem", { name: GATED });
    await user.click(within(card).getByRole("button", { name: "Download" }));
    expect(await within(card).findByRole("alert")).toHaveTextContent("this repo is gated");
    expect(within(card).getByRole("button", { name: "Open Settings" })).toBeInTheDocument();
  });

  it("replaces a card by a download tile at the top when the download starts", async () => {
    const transport = fakeOrchard()
      .onCall("search_models", () => results([result({ id: QWEN }), result({ id: SMOL })]))
      .onCall("start_download", ({ model }) => download({ repo: model, state: "queued", downloaded: 0 }));
    const { user } = renderShell(transport);
    const card = await screen.findByRole("listitem", { name: SMOL });
    expect(within(card).queryByRole("progressbar")).toBeNull();
    await user.click(within(card).getByRole("button", { name: "Download" }));
    expect(transport.inputs("start_download")).toEqual([{ model: SMOL }]);

    const tiles = await screen.findByRole("list", { name: "Downloads" });
    const tile = within(tiles).getByRole("listitem", { name: SMOL });
    expect(within(tile).getByRole("progressbar")).toHaveAttribute("aria-valuemax", "100");
    const found = screen.getByRole("list", { name: "Search results" });
    expect(within(found).queryByRole("listitem", { name: SMOL })).toBeNull();
    expect(within(found).getByRole("listitem", { name: QWEN })).toBeInTheDocument();
    // Tiles come before the results.
    expect(tiles.compareDocumentPosition(found) & Node.DOCUMENT_POSITION_FOLLOWING).toBeTruthy();
    // Ordinary cards never show progress.
    expect(within(found).queryByRole("progressbar")).toBeNull();
  });

  it("marks a model that is already in the library", async () => {
    const transport = fakeOrchard().onCall("search_models", () => results([result({ downloaded: true })]));
    renderShell(transport);
    const card = await screen.findByRole("listitem", { name: SMOL });
    expect(within(card).getByText("In Library")).toBeInTheDocument();
    expect(within(card).queryByRole("button", { name: "Download" })).toBeNull();
  });

  describe("details", () => {
    it("shows the facts, files and the model card, sanitized", async () => {
      const readme = [
        "# SmolLM2",
        "",
        "A **small** model. [Paper](https://arxiv.org/abs/1) and [config](config.json).",
        "",
        "<script>window.__pwned = true</script>",
        '<img src="x" onerror="window.__pwned = true">',
        '<a href="javascript:window.__pwned=true">click</a>',
      ].join("\n");
      const transport = fakeOrchard()
        .onCall("search_models", () => results([result()]))
        .onCall("model_details", () => details({ readme, license: "apache-2.0" }));
      const { user } = renderShell(transport);
      const card = await screen.findByRole("listitem", { name: SMOL });
      const opener = within(card).getByRole("button", { name: "Details" });
      await user.click(opener);

      const dialog = await screen.findByRole("dialog", { name: SMOL });
      expect(transport.inputs("model_details")).toEqual([{ model: SMOL }]);
      const card_ = await within(dialog).findByRole("region", { name: "Model card" });
      expect(within(card_).getByRole("heading", { name: "SmolLM2" })).toBeInTheDocument();
      expect(within(card_).getByText("small").tagName).toBe("STRONG");
      expect(card_.querySelector("script")).toBeNull();
      expect(card_.querySelector("[onerror]")).toBeNull();
      expect(card_.querySelector("img")).not.toBeNull();
      expect(within(card_).getByText("click")).not.toHaveAttribute("href", expect.stringMatching(/javascript/));
      expect((window as { __pwned?: boolean }).__pwned).toBeUndefined();
      // Links open outside the page; relative ones point into the repo on the Hub.
      expect(within(card_).getByRole("link", { name: "Paper" })).toHaveAttribute("target", "_blank");
      expect(within(card_).getByRole("link", { name: "config" })).toHaveAttribute(
        "href",
        `https://huggingface.co/${SMOL}/resolve/0123456789abcdef/config.json`,
      );

      const files = within(dialog).getByRole("list", { name: "Files" });
      expect(within(files).getByText("model.safetensors")).toBeInTheDocument();
      expect(within(files).getByText("76.0 MB")).toBeInTheDocument();
      expect(within(dialog).getByText("apache-2.0")).toBeInTheDocument();
      expect(within(dialog).getByText("Open")).toBeInTheDocument();
      expect(within(dialog).getByText("8,192 tokens")).toBeInTheDocument();
      expect(within(dialog).getByText("135M")).toBeInTheDocument();
      expect(within(dialog).getByText("46.1 KB")).toBeInTheDocument();

      await user.keyboard("{Escape}");
      await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
      expect(opener).toHaveFocus();
    });

    it("says a gated model needs a token and leads to Settings", async () => {
      const transport = fakeOrchard()
        .onCall("search_models", () => results([result({ id: GATED, gated: true })]))
        .onCall("model_details", () => details({ id: GATED, gated: true, needs_token: true, facts: null, readme: null }));
      const { user } = renderShell(transport);
      const card = await screen.findByRole("listitem", { name: GATED });
      await user.click(within(card).getByRole("button", { name: "Details" }));
      const dialog = await screen.findByRole("dialog", { name: GATED });
      expect(await within(dialog).findByText("Gated: needs a token")).toBeInTheDocument();
      await user.click(within(dialog).getByRole("button", { name: "Open Settings" }));
      expect(screen.queryByRole("dialog")).toBeNull();
      expect(await screen.findByRole("heading", { name: "Settings", level: 1 })).toBeInTheDocument();
    });

    it("says when the Hub refuses the details for want of a token, or cannot be reached", async () => {
      let code = "hub_auth";
      const transport = fakeOrchard()
        .onCall("search_models", () => results([result({ id: GATED })]))
        .onCall("model_details", () => {
          throw new TransportError("gated repo", code);
        });
      const { user } = renderShell(transport);
      const card = await screen.findByRole("listitem", { name: GATED });
      await user.click(within(card).getByRole("button", { name: "Details" }));
      let dialog = await screen.findByRole("dialog", { name: GATED });
      expect(await within(dialog).findByText("This model needs a Hugging Face token")).toBeInTheDocument();
      expect(within(dialog).getByRole("button", { name: "Open Settings" })).toBeInTheDocument();
      await user.click(within(dialog).getByRole("button", { name: "Close" }));

      code = "hub_unreachable";
      await user.click(within(card).getByRole("button", { name: "Details" }));
      dialog = await screen.findByRole("dialog", { name: GATED });
      expect(await within(dialog).findByRole("alert")).toHaveTextContent("Can't reach Hugging Face");
    });

    it("keeps keyboard focus inside the dialog", async () => {
      const transport = fakeOrchard()
        .onCall("search_models", () => results([result()]))
        .onCall("model_details", () => details({ readme: null }));
      const { user } = renderShell(transport);
      const card = await screen.findByRole("listitem", { name: SMOL });
      await user.click(within(card).getByRole("button", { name: "Details" }));
      const dialog = await screen.findByRole("dialog", { name: SMOL });
      await within(dialog).findByText("apache-2.0");
      for (let i = 0; i < 6; i++) {
        await user.tab();
        expect(dialog.contains(document.activeElement)).toBe(true);
      }
      await act(() => user.keyboard("{Escape}"));
    });
  });
});
