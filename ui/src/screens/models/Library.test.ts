// @vitest-environment jsdom
import { screen, waitFor, within } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { deferred } from "../../test/fake-transport";
import { QWEN, SMOL, download, facts, libraryModel, result, results } from "../../test/fixtures";
import { fakeOrchard, renderShell } from "../../test/render";
import type { LibraryModel } from "../../lib/api/LibraryModel";
import { TransportError } from "../../lib/transport";

const LOCAL = "My-Local-Model";

function models(): LibraryModel[] {
  return [
    libraryModel({
      id: SMOL,
      size_bytes: 76_300_000,
      last_used: Math.floor(Date.now() / 1000) - 3 * 86_400,
      revisions: [
        { commit: "aaaaaaaa11111111", refs: ["main"], size_bytes: 76_300_000 },
        { commit: "bbbbbbbb22222222", refs: [], size_bytes: 70_000_000 },
      ],
    }),
    libraryModel({
      id: QWEN,
      size_bytes: 2_300_000_000,
      last_used: Math.floor(Date.now() / 1000) - 3600,
      loaded: true,
      memory_bytes: 2_600_000_000,
      facts: facts({ architecture: "qwen3", capabilities: ["tool_use", "thinking"] }),
    }),
    libraryModel({ id: LOCAL, source: "local", path: "/models/local", size_bytes: 900_000_000, facts: null }),
  ];
}

function entry(name: string): HTMLElement {
  return within(screen.getByRole("list", { name: "Library" })).getByRole("listitem", { name });
}

function names(): string[] {
  return within(screen.getByRole("list", { name: "Library" }))
    .getAllByRole("listitem")
    .map((li) => li.getAttribute("aria-labelledby")!.replace(/^library:|-title$/g, ""));
}

describe("Library", () => {
  it("lists each model with its size, revisions, capabilities, last use and whether it is loaded", async () => {
    renderShell(fakeOrchard().onRead("list_library", models()), "#/models/library");
    const smol = await screen.findByRole("listitem", { name: SMOL });
    expect(within(smol).getByText("76.3 MB on disk")).toHaveAttribute("title", "76,300,000 bytes");
    expect(within(smol).getByText("2 revisions").getAttribute("title")).toContain("aaaaaaaa (main)");
    expect(within(smol).getByText("used 3 days ago")).toBeInTheDocument();
    expect(within(smol).queryByText("Loaded")).toBeNull();

    const qwen = entry(QWEN);
    expect(within(qwen).getByText("Loaded")).toBeInTheDocument();
    expect(within(qwen).getByText("2.6 GB in memory")).toBeInTheDocument();
    expect(within(qwen).getByText("Tools")).toBeInTheDocument();
    expect(within(qwen).getByText("Thinking")).toBeInTheDocument();
    expect(within(qwen).getByRole("button", { name: "Unload" })).toBeInTheDocument();
    expect(within(qwen).queryByRole("button", { name: "Load" })).toBeNull();

    const local = entry(LOCAL);
    expect(within(local).getByText("local folder")).toHaveAttribute("title", "/models/local");
    expect(within(local).getByText("never used")).toBeInTheDocument();
    expect(within(local).getByText("config unreadable")).toBeInTheDocument();
    expect(screen.getByText(/3 models/)).toBeInTheDocument();
  });

  it("loads and unloads a model", async () => {
    const transport = fakeOrchard()
      .onRead("list_library", models())
      .onCall("load_model", ({ model }) => ({ ...models().find((m) => m.id === model)!, loaded: true }))
      .onCall("unload_model", ({ model }) => ({ ...models().find((m) => m.id === model)!, loaded: false }));
    const { user } = renderShell(transport, "#/models/library");
    const smol = await screen.findByRole("listitem", { name: SMOL });
    await user.click(within(smol).getByRole("button", { name: "Load" }));
    expect(transport.inputs("load_model")).toEqual([{ model: SMOL }]);
    expect(await within(entry(SMOL)).findByRole("button", { name: "Unload" })).toBeInTheDocument();
    expect(within(entry(SMOL)).getByText("Loaded")).toBeInTheDocument();

    await user.click(within(entry(QWEN)).getByRole("button", { name: "Unload" }));
    expect(transport.inputs("unload_model")).toEqual([{ model: QWEN }]);
    expect(await within(entry(QWEN)).findByRole("button", { name: "Load" })).toBeInTheDocument();
  });

  it("says why a model did not load", async () => {
    const transport = fakeOrchard()
      .onRead("list_library", models())
      .onCall("load_model", () => {
        throw new TransportError("not enough memory: needs 9.1 GB", "busy");
      });
    const { user } = renderShell(transport, "#/models/library");
    const smol = await screen.findByRole("listitem", { name: SMOL });
    await user.click(within(smol).getByRole("button", { name: "Load" }));
    expect(await within(entry(SMOL)).findByRole("alert")).toHaveTextContent("not enough memory: needs 9.1 GB");
    expect(within(entry(SMOL)).getByRole("button", { name: "Load" })).toBeEnabled();
  });

  it("confirms a delete inline, saying what it frees, then deletes", async () => {
    const transport = fakeOrchard()
      .onRead("list_library", models())
      .onCall("delete_model", ({ model }) => ({ model, freed_bytes: 76_300_000 }));
    const { user } = renderShell(transport, "#/models/library");
    const smol = await screen.findByRole("listitem", { name: SMOL });

    await user.click(within(smol).getByRole("button", { name: "Delete" }));
    expect(within(smol).getByText(`Delete ${SMOL}? This frees 76.3 MB.`)).toBeInTheDocument();
    expect(within(smol).queryByRole("button", { name: "Delete" })).toBeNull();
    await user.click(within(smol).getByRole("button", { name: "Keep" }));
    expect(transport.count("delete_model")).toBe(0);

    await user.click(within(entry(SMOL)).getByRole("button", { name: "Delete" }));
    await user.click(within(entry(SMOL)).getByRole("button", { name: "Delete 76.3 MB" }));
    expect(transport.inputs("delete_model")).toEqual([{ model: SMOL }]);
    await waitFor(() => expect(screen.queryByRole("listitem", { name: SMOL })).toBeNull());
    expect(screen.getByText(`Deleted ${SMOL}: freed 76.3 MB.`)).toBeInTheDocument();
  });

  it("removes an added folder from the library without promising to free its files", async () => {
    const transport = fakeOrchard()
      .onRead("list_library", models())
      .onCall("delete_model", ({ model }) => ({ model, freed_bytes: 0 }));
    const { user } = renderShell(transport, "#/models/library");
    await screen.findByRole("listitem", { name: LOCAL });
    expect(within(entry(LOCAL)).queryByRole("button", { name: "Delete" })).toBeNull();
    await user.click(within(entry(LOCAL)).getByRole("button", { name: "Remove" }));
    expect(
      within(entry(LOCAL)).getByText(`Remove ${LOCAL} from the library? Its folder stays on disk.`),
    ).toBeInTheDocument();
    await user.click(within(entry(LOCAL)).getByRole("button", { name: "Remove from library" }));
    expect(transport.inputs("delete_model")).toEqual([{ model: LOCAL }]);
    await waitFor(() => expect(screen.queryByRole("listitem", { name: LOCAL })).toBeNull());
    expect(screen.getByText(`Removed ${LOCAL} from the library; its folder stays on disk.`)).toBeInTheDocument();
  });

  it("after a delete, Discover drops the finished download and offers the model again", async () => {
    const transport = fakeOrchard()
      .onRead("list_library", models())
      .onRead("list_downloads", [download({ repo: SMOL, state: "done", downloaded: 76_300_000, total: 76_300_000 })])
      .onCall("search_models", () => results([result({ id: SMOL, downloaded: true })]))
      .onCall("delete_model", ({ model }) => ({ model, freed_bytes: 76_300_000 }));
    const { user } = renderShell(transport, "#/models/discover");
    expect(await screen.findByText(/in your Library/)).toBeInTheDocument();

    await user.click(screen.getByRole("tab", { name: "Library" }));
    await user.click(within(entry(SMOL)).getByRole("button", { name: "Delete" }));
    await user.click(within(entry(SMOL)).getByRole("button", { name: "Delete 76.3 MB" }));
    await waitFor(() => expect(screen.queryByRole("listitem", { name: SMOL })).toBeNull());

    await user.click(screen.getByRole("tab", { name: "Discover" }));
    expect(screen.queryByText(/in your Library/)).toBeNull();
    const card = within(screen.getByRole("list", { name: "Search results" })).getByRole("listitem", { name: SMOL });
    expect(within(card).getByRole("button", { name: "Download" })).toBeInTheDocument();
  });

  it("keeps a model whose delete failed, and says why", async () => {
    const transport = fakeOrchard()
      .onRead("list_library", models())
      .onCall("delete_model", () => {
        throw new TransportError("the model is serving a request", "busy");
      });
    const { user } = renderShell(transport, "#/models/library");
    await screen.findByRole("listitem", { name: SMOL });
    await user.click(within(entry(SMOL)).getByRole("button", { name: "Delete" }));
    await user.click(within(entry(SMOL)).getByRole("button", { name: "Delete 76.3 MB" }));
    expect(await within(entry(SMOL)).findByRole("alert")).toHaveTextContent("the model is serving a request");
    expect(within(entry(SMOL)).getByRole("button", { name: "Delete" })).toBeInTheDocument();
  });

  it("filters by name and capability, and sorts by name, size and last use", async () => {
    const { user } = renderShell(fakeOrchard().onRead("list_library", models()), "#/models/library");
    await screen.findByRole("listitem", { name: SMOL });
    expect(names()).toEqual([LOCAL, QWEN, SMOL]);

    await user.selectOptions(screen.getByRole("combobox", { name: "Sort by" }), "Size");
    expect(names()).toEqual([QWEN, LOCAL, SMOL]);
    await user.selectOptions(screen.getByRole("combobox", { name: "Sort by" }), "Last used");
    expect(names()).toEqual([QWEN, SMOL, LOCAL]);

    await user.selectOptions(screen.getByRole("combobox", { name: "Capability" }), "Thinking");
    expect(names()).toEqual([QWEN]);
    await user.selectOptions(screen.getByRole("combobox", { name: "Capability" }), "Any");

    await user.type(screen.getByRole("searchbox", { name: "Filter library" }), "smol");
    expect(names()).toEqual([SMOL]);
    await user.type(screen.getByRole("searchbox", { name: "Filter library" }), "zzz");
    expect(screen.getByText("No models match")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Clear filter" }));
    expect(names()).toHaveLength(3);
  });

  it("adds a model folder by its path", async () => {
    const transport = fakeOrchard()
      .onRead("list_library", [])
      .onCall("add_folder", ({ path }) => {
        if (path !== "/models/My-Local-Model") throw new TransportError(`${path}: no config.json`, "invalid_input");
        return libraryModel({ id: LOCAL, source: "local", path });
      });
    const { user } = renderShell(transport, "#/models/library");
    expect(await screen.findByText("No models yet")).toBeInTheDocument();

    await user.click(screen.getAllByRole("button", { name: "Add folder" })[0]!);
    const field = screen.getByRole("textbox", { name: "Folder path" });
    expect(field).toHaveFocus();
    await user.type(field, "/tmp/nothing");
    await user.click(screen.getByRole("button", { name: "Add" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("/tmp/nothing: no config.json");

    await user.clear(field);
    await user.type(field, "/models/My-Local-Model{Enter}");
    expect(transport.inputs("add_folder").at(-1)).toEqual({ path: "/models/My-Local-Model" });
    expect(await screen.findByRole("listitem", { name: LOCAL })).toBeInTheDocument();
    expect(screen.queryByRole("textbox", { name: "Folder path" })).toBeNull();
  });

  it("reveals a model's folder in the app, and has no such button in a browser", async () => {
    const app = fakeOrchard({ app: true }).onRead("list_library", models());
    const { user, unmount } = renderShell(app, "#/models/library");
    const smol = await screen.findByRole("listitem", { name: SMOL });
    const reveal = within(smol).getByRole("button", { name: /^(Reveal in Finder|Show in Folder)$/ });
    await user.click(reveal);
    expect(app.recorded.filter((r) => r.op === "reveal_model")).toEqual([{ op: "reveal_model", input: { model: SMOL } }]);
    unmount();

    renderShell(fakeOrchard().onRead("list_library", models()), "#/models/library");
    const again = await screen.findByRole("listitem", { name: SMOL });
    expect(within(again).queryByRole("button", { name: /Reveal|Show in/ })).toBeNull();
  });

  it("leads Chat to the Chat screen", async () => {
    const { user } = renderShell(fakeOrchard().onRead("list_library", models()), "#/models/library");
    const smol = await screen.findByRole("listitem", { name: SMOL });
    await user.click(within(smol).getByRole("button", { name: "Chat" }));
    expect(await screen.findByText("Chat is coming in a later version")).toBeInTheDocument();
  });

  it("says it is reading, and what went wrong, with Retry", async () => {
    const answer = deferred<LibraryModel[]>();
    const transport = fakeOrchard().onRead("list_library", () => answer.promise);
    const { user } = renderShell(transport, "#/models/library");
    expect(await screen.findByText("Reading your models…")).toBeInTheDocument();
    answer.reject(new TransportError("database is locked", "internal"));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Couldn't read your models");
    expect(alert).toHaveTextContent("database is locked");
    transport.onRead("list_library", models());
    await user.click(within(alert).getByRole("button", { name: "Retry" }));
    expect(await screen.findByRole("listitem", { name: SMOL })).toBeInTheDocument();
  });
});
