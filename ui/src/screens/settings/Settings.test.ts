// @vitest-environment jsdom
import { screen, waitFor, within } from "@testing-library/svelte";
import { afterEach, describe, expect, it, vi } from "vitest";
import { RUNTIME, apiKey, settings } from "../../test/fixtures";
import { fakeOrchard, renderShell } from "../../test/render";
import { TransportError } from "../../lib/transport";
import type { ApiKeyView } from "../../lib/api/ApiKeyView";
import type { ServerSettings } from "../../lib/api/ServerSettings";
import type { TokenSource } from "../../lib/api/TokenSource";
import { THEME_STORAGE } from "../../lib/stores/theme.svelte";

const TOKEN = "hf_secretSECRETsecret123";

describe("Settings", () => {
  it("shows the Hub, memory and runtime facts", async () => {
    const transport = fakeOrchard()
      .onRead("get_settings", settings({ offline: true, hub_endpoint: "http://127.0.0.1:9000" }))
      .onRead("runtime_info", { ...RUNTIME, backend: "metal", device: "gpu" });
    renderShell(transport, "#/settings");
    expect(await screen.findByRole("heading", { name: "Settings", level: 1 })).toBeInTheDocument();
    expect(await screen.findByText("http://127.0.0.1:9000")).toBeInTheDocument();
    expect(screen.getByText(/^on \(HF_HUB_OFFLINE\)/)).toBeInTheDocument();
    expect(screen.getByText("12.0 GB")).toHaveAttribute("title", "12,000,000,000 bytes");
    expect(screen.getByText("16.0 GB")).toBeInTheDocument();
    const runtime = screen.getByRole("region", { name: "Runtime" });
    for (const text of ["0.1.0", "0.29.3", "metal", "gpu"]) expect(within(runtime).getByText(text)).toBeInTheDocument();
    expect(screen.getByText("No token set.")).toBeInTheDocument();
  });

  it("saves a Hugging Face token without ever showing it, and removes it", async () => {
    let set = false;
    const transport = fakeOrchard().onCall("set_hf_token", ({ token }) => {
      set = token !== null;
      return settings({ hf_token_set: set, token_source: set ? "stored" : "none" });
    });
    const { user } = renderShell(transport, "#/settings");
    const field = await screen.findByLabelText("Hugging Face token", { selector: "input" });
    expect(field).toHaveAttribute("type", "password");
    await user.type(field, TOKEN);
    await user.click(screen.getByRole("button", { name: "Save token" }));
    expect(transport.inputs("set_hf_token")).toEqual([{ token: TOKEN }]);
    expect(await screen.findByText("A token is set.")).toBeInTheDocument();
    expect(screen.getByText("Token saved.")).toBeInTheDocument();
    expect(field).toHaveValue("");
    expect(document.body.innerHTML).not.toContain(TOKEN);

    await user.click(screen.getByRole("button", { name: "Remove token" }));
    expect(transport.inputs("set_hf_token").at(-1)).toEqual({ token: null });
    expect(await screen.findByText("No token set.")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Remove token" })).toBeNull();
  });

  it("says why a token was not saved, and keeps what was typed", async () => {
    const transport = fakeOrchard().onCall("set_hf_token", () => {
      throw new TransportError("the keychain is locked", "internal");
    });
    const { user } = renderShell(transport, "#/settings");
    const field = await screen.findByLabelText("Hugging Face token", { selector: "input" });
    await user.type(field, "hf_x{Enter}");
    expect(await screen.findByRole("alert")).toHaveTextContent("the keychain is locked");
    expect(field).toHaveValue("hf_x");
  });

  it("says when settings or runtime facts cannot be read, and retries", async () => {
    let fail = true;
    const transport = fakeOrchard()
      .onRead("get_settings", () => {
        if (fail) throw new TransportError("store unavailable", "internal");
        return settings();
      })
      .onRead("runtime_info", () => {
        if (fail) throw new TransportError("libmlx not found", "internal");
        return RUNTIME;
      });
    const { user } = renderShell(transport, "#/settings");
    await waitFor(() => expect(screen.getAllByRole("alert")).toHaveLength(2));
    const [first, second] = screen.getAllByRole("alert");
    expect(first).toHaveTextContent("Couldn't read the settings");
    expect(first).toHaveTextContent("store unavailable");
    expect(second).toHaveTextContent("libmlx not found");
    fail = false;
    await user.click(within(first!).getByRole("button", { name: "Retry" }));
    await user.click(within(second!).getByRole("button", { name: "Retry" }));
    expect(await screen.findByText("No token set.")).toBeInTheDocument();
    expect(await screen.findByText("0.29.3")).toBeInTheDocument();
  });
});

describe("Settings: the API server", () => {
  const number = (name: string) => screen.getByRole("spinbutton", { name });

  it("sends the edited settings, then says they apply when Orchard restarts", async () => {
    const transport = fakeOrchard().onCall("update_settings", (server) => settings({ server, restart_required: true }));
    const { user } = renderShell(transport, "#/settings");
    const host = await screen.findByRole("textbox", { name: "Host" });
    expect(host).toHaveValue("127.0.0.1");
    expect(number("Port")).toHaveValue(10240);
    expect(screen.queryByText(/Applies when Orchard restarts/)).toBeNull();
    const save = screen.getByRole("button", { name: "Save settings" });
    expect(save).toBeDisabled();

    await user.clear(host);
    await user.type(host, "0.0.0.0");
    for (const [name, value] of [
      ["Port", "8080"],
      ["Idle time-to-live (minutes)", "0"],
      ["Memory budget (%)", "60"],
      ["Maximum loaded models", "2"],
      ["Queue size", "8"],
    ] as const) {
      await user.clear(number(name));
      await user.type(number(name), value);
    }
    await user.click(screen.getByRole("checkbox", { name: "Load models on first request" }));
    expect(screen.getByRole("checkbox", { name: "Require an API key" })).toBeChecked();
    await user.click(save);

    const sent: ServerSettings = {
      host: "0.0.0.0",
      port: 8080,
      require_api_key: true,
      jit_loading: false,
      idle_ttl_minutes: 0,
      memory_budget_percent: 60,
      max_loaded_models: 2,
      queue_capacity: 8,
    };
    expect(transport.inputs("update_settings")).toEqual([sent]);
    expect(await screen.findByText("Applies when Orchard restarts.")).toBeInTheDocument();
    expect(screen.getByText("Settings saved.")).toBeInTheDocument();
    // The form shows what was stored, and has nothing left to save.
    expect(number("Queue size")).toHaveValue(8);
    expect(save).toBeDisabled();
  });

  it("shows Orchard's refusal at the setting it names, keeping what was typed", async () => {
    const transport = fakeOrchard().onCall("update_settings", () => {
      throw new TransportError("memory_budget_percent must be between 1 and 100", "invalid_input");
    });
    const { user } = renderShell(transport, "#/settings");
    const budget = await screen.findByRole("spinbutton", { name: "Memory budget (%)" });
    await user.clear(budget);
    await user.type(budget, "95");
    await user.click(screen.getByRole("button", { name: "Save settings" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("memory_budget_percent must be between 1 and 100");
    expect(budget).toHaveAttribute("aria-invalid", "true");
    expect(budget).toHaveAccessibleDescription(/must be between 1 and 100/);
    expect(number("Port")).toHaveAttribute("aria-invalid", "false");
    expect(budget).toHaveValue(95);
    expect(screen.queryByText("Settings saved.")).toBeNull();
  });

  it("checks what Orchard would refuse to start with before sending", async () => {
    const transport = fakeOrchard().onCall("update_settings", (server) => settings({ server }));
    const { user } = renderShell(transport, "#/settings");
    const port = await screen.findByRole("spinbutton", { name: "Port" });
    await user.clear(port);
    const host = screen.getByRole("textbox", { name: "Host" });
    await user.clear(host);
    await user.type(host, "0.0.0.0");
    const key = screen.getByRole("checkbox", { name: "Require an API key" });
    await user.click(key);
    await user.click(screen.getByRole("button", { name: "Save settings" }));

    expect(transport.count("update_settings")).toBe(0);
    expect(port).toHaveAttribute("aria-invalid", "true");
    expect(port).toHaveAccessibleDescription(/Port: enter a whole number from 1 to 65535/);
    expect(port).toHaveFocus();
    expect(key).toHaveAccessibleDescription(/Orchard requires a key there/);

    await user.type(port, "9000");
    await user.click(key);
    expect(port).toHaveAttribute("aria-invalid", "false");
    await user.click(screen.getByRole("button", { name: "Save settings" }));
    expect(transport.inputs("update_settings")).toMatchObject([{ host: "0.0.0.0", port: 9000, require_api_key: true }]);
  });

  it("says a stored change waits for a restart, as Orchard reports it", async () => {
    renderShell(fakeOrchard().onRead("get_settings", settings({ restart_required: true })), "#/settings");
    expect(await screen.findByText("Applies when Orchard restarts.")).toBeInTheDocument();
  });

  it("lists the folders Orchard uses", async () => {
    const transport = fakeOrchard().onRead(
      "get_settings",
      settings({ model_folders: ["/srv/models/Llama-3-8B-4bit", "/srv/models/Qwen3"] }),
    );
    renderShell(transport, "#/settings");
    const folders = await screen.findByRole("region", { name: "Folders" });
    expect(within(folders).getByText("/home/me/.local/share/orchard")).toBeInTheDocument();
    expect(within(folders).getByText("/home/me/.cache/huggingface/hub")).toBeInTheDocument();
    const list = within(folders).getByRole("list", { name: "Model folders" });
    expect(within(list).getAllByRole("listitem").map((li) => li.textContent)).toEqual([
      "/srv/models/Llama-3-8B-4bit",
      "/srv/models/Qwen3",
    ]);
  });
});

describe("Settings: the Hugging Face token's source", () => {
  it.each<[TokenSource, string, boolean]>([
    ["environment", "from the HF_TOKEN environment variable", false],
    ["stored", "stored by Orchard", true],
    ["huggingface_hub", "from huggingface_hub's token file", false],
    ["none", "none", false],
  ])("%s: says the token in use is %s", async (source, text, removable) => {
    const transport = fakeOrchard().onRead(
      "get_settings",
      settings({ hf_token_set: source !== "none", token_source: source }),
    );
    renderShell(transport, "#/settings");
    const panel = await screen.findByRole("region", { name: "Hugging Face token" });
    expect(within(panel).getByText("Token in use").nextElementSibling).toHaveTextContent(new RegExp(`^${text}$`));
    // Only the token Orchard keeps can be removed here.
    expect(within(panel).queryByRole("button", { name: "Remove token" }) !== null).toBe(removable);
  });
});

describe("Settings: API keys", () => {
  const SECRET = "orch-5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee";

  function keyring() {
    let keys: ApiKeyView[] = [apiKey()];
    return fakeOrchard()
      .onRead("list_keys", () => keys)
      .onCall("create_key", ({ name }) => {
        const key = apiKey({ id: 2, name, prefix: "orch-5f0c0ff..." });
        keys = [...keys, key];
        return { key, secret: SECRET };
      })
      .onCall("revoke_key", ({ id }) => {
        keys = keys.map((k) => (k.id === id ? { ...k, revoked_at: "2025-05-03T09:00:00Z" } : k));
        return keys;
      });
  }

  it("shows a new key's secret once, with Copy, and never after leaving Settings", async () => {
    const transport = keyring();
    const { user } = renderShell(transport, "#/settings");
    const list = await screen.findByRole("list", { name: "API keys" });
    expect(within(list).getByRole("listitem", { name: "default" })).toHaveTextContent("orch-1a2b3c4...");
    expect(within(list).getByRole("listitem", { name: "default" })).toHaveTextContent("never used");

    await user.type(screen.getByRole("textbox", { name: "Key name" }), "Zed on my laptop");
    await user.click(screen.getByRole("button", { name: "Create key" }));
    expect(transport.inputs("create_key")).toEqual([{ name: "Zed on my laptop" }]);
    const secret = await screen.findByRole("textbox", { name: "New API key" });
    expect(secret).toHaveValue(SECRET);
    expect(secret).toHaveAttribute("readonly");
    expect(screen.getByText(/will not show it again/)).toBeInTheDocument();
    expect(screen.getByRole("textbox", { name: "Key name" })).toHaveValue("");
    expect(within(list).getByRole("listitem", { name: "Zed on my laptop" })).toHaveTextContent("orch-5f0c0ff...");

    await user.click(screen.getByRole("button", { name: "Copy" }));
    expect(await navigator.clipboard.readText()).toBe(SECRET);
    expect(screen.getByText("Copied.")).toBeInTheDocument();

    await user.click(screen.getByRole("link", { name: "Models" }));
    await user.click(screen.getByRole("link", { name: "Settings" }));
    const again = await screen.findByRole("list", { name: "API keys" });
    expect(within(again).getByRole("listitem", { name: "Zed on my laptop" })).toBeInTheDocument();
    expect(screen.queryByRole("textbox", { name: "New API key" })).toBeNull();
    expect(document.body.innerHTML).not.toContain(SECRET);
  });

  it("says why a key was not made", async () => {
    const transport = keyring().onCall("create_key", () => {
      throw new TransportError("a key's name must have 1 to 64 characters", "invalid_input");
    });
    const { user } = renderShell(transport, "#/settings");
    await user.type(await screen.findByRole("textbox", { name: "Key name" }), "x{Enter}");
    expect(await screen.findByRole("alert")).toHaveTextContent("a key's name must have 1 to 64 characters");
    expect(screen.queryByRole("textbox", { name: "New API key" })).toBeNull();
  });

  it("revokes a key only after an inline confirmation", async () => {
    const transport = keyring();
    const { user } = renderShell(transport, "#/settings");
    const item = await screen.findByRole("listitem", { name: "default" });

    await user.click(within(item).getByRole("button", { name: "Revoke" }));
    expect(within(item).getByRole("button", { name: "Keep" })).toHaveFocus();
    await user.click(within(item).getByRole("button", { name: "Keep" }));
    expect(transport.count("revoke_key")).toBe(0);

    await user.click(within(item).getByRole("button", { name: "Revoke" }));
    await user.click(within(item).getByRole("button", { name: "Revoke default" }));
    expect(transport.inputs("revoke_key")).toEqual([{ id: 1 }]);
    expect(await within(item).findByText("Revoked")).toBeInTheDocument();
    expect(within(item).queryByRole("button", { name: /Revoke/ })).toBeNull();
  });
});

describe("Settings: theme", () => {
  /** A stand-in for the system's light/dark setting that can change under the page. */
  function systemScheme(dark: boolean) {
    const listeners = new Set<(e: { matches: boolean }) => void>();
    const query = {
      get matches() {
        return dark;
      },
      addEventListener: (_: string, fn: (e: { matches: boolean }) => void) => listeners.add(fn),
      removeEventListener: (_: string, fn: (e: { matches: boolean }) => void) => listeners.delete(fn),
    };
    vi.stubGlobal("matchMedia", (q: string) => {
      expect(q).toBe("(prefers-color-scheme: dark)");
      return query;
    });
    return (next: boolean) => {
      dark = next;
      for (const fn of listeners) fn({ matches: next });
    };
  }

  afterEach(() => {
    vi.unstubAllGlobals();
    localStorage.clear();
    delete document.documentElement.dataset.theme;
  });

  it("keeps the chosen theme across windows; System follows the system's setting", async () => {
    const setSystem = systemScheme(true);
    const first = renderShell(fakeOrchard(), "#/settings");
    const group = await screen.findByRole("radiogroup", { name: "Theme" });
    expect(within(group).getByRole("radio", { name: "System" })).toBeChecked();
    expect(document.documentElement.dataset.theme).toBe("dark");
    setSystem(false);
    await waitFor(() => expect(document.documentElement.dataset.theme).toBe("light"));

    await first.user.click(within(group).getByRole("radio", { name: "Dark" }));
    expect(localStorage.getItem(THEME_STORAGE)).toBe("dark");
    expect(document.documentElement.dataset.theme).toBe("dark");
    // An explicit choice ignores the system's.
    setSystem(false);
    expect(document.documentElement.dataset.theme).toBe("dark");
    first.unmount();

    delete document.documentElement.dataset.theme;
    const second = renderShell(fakeOrchard(), "#/settings");
    const again = await screen.findByRole("radiogroup", { name: "Theme" });
    expect(within(again).getByRole("radio", { name: "Dark" })).toBeChecked();
    expect(document.documentElement.dataset.theme).toBe("dark");

    await second.user.click(within(again).getByRole("radio", { name: "Light" }));
    expect(localStorage.getItem(THEME_STORAGE)).toBe("light");
    expect(document.documentElement.dataset.theme).toBe("light");
  });

  it("in the app, turns start-at-login on and off and offers a restart when settings wait for one", async () => {
    const transport = fakeOrchard({ app: true }).onRead("get_settings", settings({ restart_required: true }));
    const { user } = renderShell(transport, "#/settings");
    const box = await screen.findByRole("checkbox", { name: "Start Orchard at login" });
    await waitFor(() => expect(box).toBeEnabled());
    expect(box).not.toBeChecked();
    await user.click(box);
    await waitFor(() => expect(box).toBeChecked());
    expect(transport.atLogin).toBe(true);
    await user.click(box);
    await waitFor(() => expect(box).not.toBeChecked());
    expect(transport.recorded.filter((r) => r.op === "set_launch_at_login").map((r) => r.input)).toEqual([true, false]);

    await user.click(screen.getByRole("button", { name: "Restart Orchard" }));
    expect(transport.recorded.some((r) => r.op === "restart_app")).toBe(true);
  });

  it("in a browser, has no start-at-login or restart controls", async () => {
    renderShell(fakeOrchard().onRead("get_settings", settings({ restart_required: true })), "#/settings");
    await screen.findByRole("textbox", { name: "Host" });
    expect(screen.queryByRole("checkbox", { name: "Start Orchard at login" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Restart Orchard" })).toBeNull();
  });
});
