// @vitest-environment jsdom
import { screen, waitFor, within } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { RUNTIME, settings } from "../../test/fixtures";
import { fakeOrchard, renderShell } from "../../test/render";
import { TransportError } from "../../lib/transport";

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
      return settings({ hf_token_set: set });
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
