// @vitest-environment jsdom
import { render, screen, waitFor, within } from "@testing-library/svelte";
import { userEvent } from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import App from "./App.svelte";
import { SMOL, libraryModel, settings, RUNTIME } from "./test/fixtures";
import { fakeOrchard, renderShell } from "./test/render";
import { API_KEY_STORAGE, type ServerStatus } from "./lib/transport";

describe("navigation shell", () => {
  it("reaches every screen from the sidebar and marks the current one", async () => {
    const { user } = renderShell(fakeOrchard());
    const nav = screen.getByRole("navigation", { name: "Main" });
    const links = within(nav).getAllByRole("link");
    expect(links.map((l) => l.textContent?.trim())).toEqual(["Models", "Servers", "Chat", "Settings"]);
    expect(within(nav).getByRole("link", { name: "Models" })).toHaveAttribute("aria-current", "page");

    await user.click(within(nav).getByRole("link", { name: "Servers" }));
    expect(screen.getByRole("heading", { name: "Servers", level: 1 })).toBeInTheDocument();
    expect(await screen.findByText("No model is loaded")).toBeInTheDocument();
    expect(within(nav).getByRole("link", { name: "Servers" })).toHaveAttribute("aria-current", "page");
    expect(within(nav).getByRole("link", { name: "Models" })).not.toHaveAttribute("aria-current");

    await user.click(within(nav).getByRole("link", { name: "Chat" }));
    expect(screen.getByText("Chat is coming in a later version")).toBeInTheDocument();
    expect(window.location.hash).toBe("#/chat");

    await user.click(within(nav).getByRole("link", { name: "Settings" }));
    expect(screen.getByRole("heading", { name: "Settings", level: 1 })).toBeInTheDocument();

    await user.click(within(nav).getByRole("link", { name: "Models" }));
    expect(screen.getByRole("searchbox", { name: "Search models" })).toBeVisible();
  });

  it("switches Models tabs by click and by arrow keys", async () => {
    const transport = fakeOrchard().onRead("list_library", [libraryModel()]);
    const { user } = renderShell(transport);
    const tabs = screen.getByRole("tablist", { name: "Models" });
    const discover = within(tabs).getByRole("tab", { name: "Discover" });
    const library = within(tabs).getByRole("tab", { name: "Library" });
    expect(discover).toHaveAttribute("aria-selected", "true");

    await user.click(library);
    expect(library).toHaveAttribute("aria-selected", "true");
    expect(await screen.findByRole("listitem", { name: SMOL })).toBeVisible();
    expect(screen.queryByRole("searchbox", { name: "Search models" })).toBeNull();

    await user.keyboard("{ArrowLeft}");
    expect(discover).toHaveAttribute("aria-selected", "true");
    expect(discover).toHaveFocus();
    expect(screen.getByRole("searchbox", { name: "Search models" })).toBeVisible();
  });

  it("focuses the model search with Ctrl+K or Cmd+K from any screen", async () => {
    const { user } = renderShell(fakeOrchard(), "#/settings");
    await screen.findByRole("heading", { name: "Settings", level: 1 });
    await user.keyboard("{Control>}k{/Control}");
    const box = screen.getByRole("searchbox", { name: "Search models" });
    expect(box).toHaveFocus();

    await user.click(screen.getByRole("link", { name: "Chat" }));
    await user.keyboard("{Meta>}k{/Meta}");
    expect(screen.getByRole("searchbox", { name: "Search models" })).toHaveFocus();
  });

  it("shows the app's API server on Servers, asking again while it starts", async () => {
    vi.useFakeTimers();
    try {
      const statuses: ServerStatus[] = [
        { state: "starting", url: null, api_key_required: true, new_api_key: null, error: null },
        {
          state: "running",
          url: "http://127.0.0.1:10240/v1",
          api_key_required: true,
          new_api_key: "orch-first-key",
          error: null,
        },
      ];
      const app = fakeOrchard({ app: true });
      app.serverStatus = async () => statuses.shift() ?? statuses[0]!;
      renderShell(app, "#/servers", { fakeTimers: true });
      await vi.advanceTimersByTimeAsync(0);
      expect(screen.getByText("Starting the API server…")).toBeInTheDocument();
      await vi.advanceTimersByTimeAsync(1000);
      expect(screen.getByText("http://127.0.0.1:10240/v1")).toBeInTheDocument();
      expect(screen.getByText("orch-first-key")).toBeInTheDocument();
      expect(screen.getByText("required")).toBeInTheDocument();
      expect(screen.getByRole("region", { name: "API server" })).toBeInTheDocument();
    } finally {
      vi.useRealTimers();
    }
  });

  it("has no API server panel in a browser", async () => {
    renderShell(fakeOrchard(), "#/servers");
    expect(screen.getByRole("heading", { name: "Servers", level: 1 })).toBeInTheDocument();
    expect(screen.queryByRole("region", { name: "API server" })).toBeNull();
  });
});

describe("API key prompt (browser)", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    sessionStorage.clear();
  });

  /** Orchard's /api as a fetch stand-in: only `Bearer sk-right` gets in. */
  function serve() {
    const seen: { url: string; auth: string | null }[] = [];
    vi.stubGlobal("fetch", async (url: string, init: RequestInit = {}) => {
      const headers = new Headers(init.headers);
      const auth = headers.get("authorization");
      seen.push({ url, auth });
      if (auth !== "Bearer sk-right") {
        return new Response(
          JSON.stringify({ error: { message: "Invalid API key", type: "invalid_request_error", code: "invalid_api_key" } }),
          { status: 401, headers: { "Content-Type": "application/json" } },
        );
      }
      const path = new URL(url).pathname;
      if (path === "/api/downloads/events") {
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            init.signal?.addEventListener("abort", () => controller.error(new Error("aborted")));
          },
        });
        return new Response(body, { headers: { "Content-Type": "text/event-stream" } });
      }
      const answers: Record<string, unknown> = {
        "/api/downloads": [],
        "/api/library": [libraryModel()],
        "/api/settings": settings(),
        "/api/runtime": RUNTIME,
        "/api/models/search": { models: [], memory_budget_bytes: 1 },
      };
      return new Response(JSON.stringify(answers[path] ?? null), { status: path in answers ? 200 : 404 });
    });
    return seen;
  }

  it("asks for the key, asks again when it is refused, and keeps it for the session", async () => {
    const seen = serve();
    window.location.hash = "#/models/library";
    const user = userEvent.setup();
    render(App);

    let dialog = await screen.findByRole("dialog", { name: "Orchard's API key" });
    expect(within(dialog).queryByRole("alert")).toBeNull();
    const field = within(dialog).getByLabelText("API key");
    expect(field).toHaveFocus();
    expect(field).toHaveAttribute("type", "password");
    await user.type(field, "sk-wrong");
    await user.click(within(dialog).getByRole("button", { name: "Continue" }));

    dialog = await screen.findByRole("dialog", { name: "Orchard's API key" });
    expect(await within(dialog).findByRole("alert")).toHaveTextContent("That API key was not accepted");
    expect(seen.some((r) => r.auth === "Bearer sk-wrong")).toBe(true);

    await user.type(within(dialog).getByLabelText("API key"), "sk-right{Enter}");
    expect(await screen.findByRole("listitem", { name: SMOL })).toBeInTheDocument();
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(sessionStorage.getItem(API_KEY_STORAGE)).toBe("sk-right");
    expect(Object.values(localStorage)).not.toContain("sk-right");
    expect(window.location.href).not.toContain("sk-");
    await waitFor(() => expect(seen.some((r) => r.url.endsWith("/api/downloads/events") && r.auth === "Bearer sk-right")).toBe(true));
    expect(seen.every((r) => !r.url.includes("sk-"))).toBe(true);
  });

  it("behind the key prompt, Discover waits for the key instead of reporting a failed search", async () => {
    serve();
    window.location.hash = "#/models/discover";
    render(App);
    await screen.findByRole("dialog", { name: "Orchard's API key" });
    expect(await screen.findByText("Waiting for the API key")).toBeInTheDocument();
    expect(screen.queryByText(/Search failed/)).toBeNull();
  });

  it("uses the key already kept in this session without asking", async () => {
    serve();
    sessionStorage.setItem(API_KEY_STORAGE, "sk-right");
    window.location.hash = "#/models/library";
    render(App);
    expect(await screen.findByRole("listitem", { name: SMOL })).toBeInTheDocument();
    expect(screen.queryByRole("dialog")).toBeNull();
  });
});
