// @vitest-environment jsdom
import { screen, waitFor, within } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { QWEN, SMOL, libraryModel, profile, serverTile, serversView } from "../../test/fixtures";
import { deferred, type FakeTransport } from "../../test/fake-transport";
import { fakeOrchard, renderShell } from "../../test/render";
import { TransportError } from "../../lib/transport";
import type { Profile } from "../../lib/api/Profile";
import type { ServersView } from "../../lib/api/ServersView";

const profilesList = () => screen.findByRole("list", { name: "Profiles" });
const itemOf = async (name: string) => within(await profilesList()).getByRole("listitem", { name });
const dialog = (name: string) => screen.findByRole("dialog", { name });

/** Orchard with two Library models and the given profiles, answering profile calls as it would. */
function orchard(profiles: Profile[] = []): FakeTransport {
  let stored = [...profiles];
  return fakeOrchard()
    .onRead("list_library", [libraryModel(), libraryModel({ id: QWEN })])
    .onRead("list_profiles", () => stored)
    .onCall("create_profile", (p) => {
      stored = [...stored, p];
      return p;
    })
    .onCall("update_profile", ({ name, profile: p }) => {
      stored = [...stored.filter((s) => s.name !== name), p];
      return p;
    })
    .onCall("delete_profile", ({ name }) => {
      stored = stored.filter((s) => s.name !== name);
      return stored;
    });
}

describe("Profiles", () => {
  it("lists each profile with its model, description and the defaults it sets", async () => {
    const transport = orchard([
      profile({
        name: "writer",
        model: QWEN,
        description: "Long-form drafts\nin British English",
        system_prompt: "You are a careful editor.",
        temperature: 0.9,
        max_tokens: 4096,
        context_length: 16384,
        idle_ttl_minutes: 90,
      }),
      profile({ name: "coder", keep_loaded: true, top_p: 0.95 }),
    ]);
    renderShell(transport, "#/servers");
    const list = await profilesList();
    // Named by the profile's name, in order.
    const items = within(list).getAllByRole("listitem");
    expect(items[0]).toHaveAccessibleName("coder");
    expect(items[1]).toHaveAccessibleName("writer");

    const writer = await itemOf("writer");
    expect(within(writer).getByText(QWEN)).toBeInTheDocument();
    expect(within(writer).getByText(/Long-form drafts\s+in British English/)).toBeInTheDocument();
    expect(within(writer).getByText("You are a careful editor.")).toBeInTheDocument();
    expect(
      within(writer).getByText(
        "Temperature 0.9 · Max tokens 4,096 · Context 16,384 tokens · Unloads after 90 min idle",
      ),
    ).toBeInTheDocument();
    const coder = await itemOf("coder");
    expect(within(coder).getByText(SMOL)).toBeInTheDocument();
    expect(within(coder).getByText("Top P 0.95 · Keep loaded")).toBeInTheDocument();
    for (const name of ["Start", "Edit", "Duplicate", "Delete"]) {
      expect(within(coder).getByRole("button", { name })).toBeEnabled();
    }
    expect(screen.getByRole("button", { name: "New profile" })).toBeInTheDocument();
    expect(screen.getByText(/Clients can use its name as the model/)).toBeInTheDocument();
  });

  it("with no profiles, says so and offers New profile", async () => {
    const { user } = renderShell(orchard(), "#/servers");
    expect(await screen.findByText("No profiles yet")).toBeInTheDocument();
    expect(screen.queryByRole("list", { name: "Profiles" })).toBeNull();
    const buttons = screen.getAllByRole("button", { name: "New profile" });
    expect(buttons).toHaveLength(1);
    await user.click(buttons[0]!);
    expect(await dialog("New profile")).toBeInTheDocument();
  });

  it("creates a profile from the typed values; numbers left empty are sent as null", async () => {
    const transport = orchard();
    const { user } = renderShell(transport, "#/servers");
    await user.click(await screen.findByRole("button", { name: "New profile" }));
    const form = await dialog("New profile");
    const name = within(form).getByRole("textbox", { name: "Name" });
    expect(name).toHaveFocus();
    expect(name).toHaveAccessibleDescription(/Clients can use this name as the model/);

    await user.type(name, "  coder ");
    await waitFor(() => expect(within(form).getAllByRole("option")).toHaveLength(3));
    await user.selectOptions(within(form).getByRole("combobox", { name: "Model" }), QWEN);
    await user.type(within(form).getByRole("textbox", { name: "Description" }), "Pair programming{Enter}Second line");
    await user.type(within(form).getByRole("textbox", { name: "System prompt" }), "You write Rust.{Enter}Be brief.");
    await user.type(within(form).getByRole("spinbutton", { name: "Temperature" }), "0.2");
    await user.type(within(form).getByRole("spinbutton", { name: "Top K" }), "40");
    await user.type(within(form).getByRole("spinbutton", { name: "Max tokens" }), "2048");
    await user.type(within(form).getByRole("spinbutton", { name: "Idle time-to-live (minutes)" }), "0");
    await user.click(within(form).getByRole("checkbox", { name: "Keep loaded" }));
    await user.click(within(form).getByRole("button", { name: "Save profile" }));

    expect(transport.inputs("create_profile")).toEqual([
      {
        name: "coder",
        model: QWEN,
        description: "Pair programming\nSecond line",
        system_prompt: "You write Rust.\nBe brief.",
        temperature: 0.2,
        top_p: null,
        top_k: 40,
        min_p: null,
        repetition_penalty: null,
        max_tokens: 2048,
        context_length: null,
        idle_ttl_minutes: 0,
        keep_loaded: true,
      },
    ]);
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    const coder = await itemOf("coder");
    expect(within(coder).getByText(QWEN)).toBeInTheDocument();
    expect(within(coder).getByText("Temperature 0.2 · Top K 40 · Max tokens 2,048 · Keep loaded")).toBeInTheDocument();
    expect(screen.queryByText("No profiles yet")).toBeNull();
  });

  it("edits a profile under its old name, renaming it", async () => {
    const transport = orchard([profile({ temperature: 0.7, description: "old" })]);
    const { user } = renderShell(transport, "#/servers");
    await user.click(within(await itemOf("coder")).getByRole("button", { name: "Edit" }));
    const form = await dialog("Edit profile");
    const name = within(form).getByRole("textbox", { name: "Name" });
    expect(name).toHaveValue("coder");
    expect(within(form).getByRole("combobox", { name: "Model" })).toHaveValue(SMOL);
    expect(within(form).getByRole("spinbutton", { name: "Temperature" })).toHaveValue(0.7);

    await user.clear(name);
    await user.type(name, "rustacean");
    await user.clear(within(form).getByRole("spinbutton", { name: "Temperature" }));
    await user.type(within(form).getByRole("spinbutton", { name: "Context length" }), "8192");
    await user.click(within(form).getByRole("button", { name: "Save profile" }));

    expect(transport.inputs("update_profile")).toEqual([
      { name: "coder", profile: profile({ name: "rustacean", description: "old", context_length: 8192 }) },
    ]);
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    const list = await profilesList();
    expect(within(list).getAllByRole("listitem")).toHaveLength(1);
    expect(within(list).getByRole("listitem", { name: "rustacean" })).toBeInTheDocument();
    expect(within(list).queryByRole("listitem", { name: "coder" })).toBeNull();
    // Its model's tile is read again at once, to name the renamed profile.
    expect(transport.count("list_servers")).toBeGreaterThanOrEqual(2);
  });

  it("duplicates a profile into a new one named '<name> copy'", async () => {
    const original = profile({ system_prompt: "Be terse.", top_p: 0.8, keep_loaded: true });
    const transport = orchard([original, profile({ name: "coder copy" })]);
    const { user } = renderShell(transport, "#/servers");
    await user.click(within(await itemOf("coder")).getByRole("button", { name: "Duplicate" }));
    const form = await dialog("New profile");
    // "coder copy" is taken.
    expect(within(form).getByRole("textbox", { name: "Name" })).toHaveValue("coder copy 2");
    expect(within(form).getByRole("textbox", { name: "System prompt" })).toHaveValue("Be terse.");
    expect(within(form).getByRole("spinbutton", { name: "Top P" })).toHaveValue(0.8);
    expect(within(form).getByRole("checkbox", { name: "Keep loaded" })).toBeChecked();
    await user.click(within(form).getByRole("button", { name: "Save profile" }));
    expect(transport.inputs("create_profile")).toEqual([{ ...original, name: "coder copy 2" }]);
    expect(transport.inputs("update_profile")).toEqual([]);
    expect(await itemOf("coder copy 2")).toBeInTheDocument();
    expect(await itemOf("coder")).toBeInTheDocument();
  });

  it("duplicates as '<name> copy' when that name is free", async () => {
    const { user } = renderShell(orchard([profile()]), "#/servers");
    await user.click(within(await itemOf("coder")).getByRole("button", { name: "Duplicate" }));
    expect(within(await dialog("New profile")).getByRole("textbox", { name: "Name" })).toHaveValue("coder copy");
  });

  it("deletes only after an inline confirmation; Keep keeps it", async () => {
    const transport = orchard([profile()]);
    const { user } = renderShell(transport, "#/servers");
    const item = await itemOf("coder");
    await user.click(within(item).getByRole("button", { name: "Delete" }));
    const confirm = within(item).getByRole("group", { name: /^Delete coder\?/ });
    expect(confirm).toHaveAccessibleName(
      "Delete coder? Clients asking for it are refused from now on; its model stays in your Library.",
    );
    const keep = within(confirm).getByRole("button", { name: "Keep" });
    expect(keep).toHaveFocus();
    await user.click(keep);
    expect(transport.inputs("delete_profile")).toEqual([]);
    expect(within(item).queryByRole("group")).toBeNull();

    await user.click(within(item).getByRole("button", { name: "Delete" }));
    await user.click(within(item).getByRole("button", { name: "Delete coder" }));
    expect(transport.inputs("delete_profile")).toEqual([{ name: "coder" }]);
    expect(await screen.findByText("No profiles yet")).toBeInTheDocument();
  });

  it("says why a delete failed, in the profile", async () => {
    const transport = orchard([profile()]).onCall("delete_profile", ({ name }) => {
      throw new TransportError(`no profile is named "${name}"`, "not_found");
    });
    const { user } = renderShell(transport, "#/servers");
    const item = await itemOf("coder");
    await user.click(within(item).getByRole("button", { name: "Delete" }));
    await user.click(within(item).getByRole("button", { name: "Delete coder" }));
    expect(await within(item).findByRole("alert")).toHaveTextContent('Couldn\'t delete coder: no profile is named "coder"');
  });

  it("shows Orchard's refusals at the field they name, until that field changes", async () => {
    const refusals = [
      new TransportError(
        "temperature: must be between 0 and 2 (or empty for the request's or the model's default)",
        "invalid_input",
      ),
      new TransportError('a profile named "coder" already exists; choose another name', "conflict"),
      new TransportError(`model: "${QWEN}" is not in the library; download it or add its folder first`, "invalid_input"),
      new TransportError("the database is locked", "internal"),
    ];
    const transport = orchard().onCall("create_profile", () => {
      throw refusals.shift()!;
    });
    const { user } = renderShell(transport, "#/servers");
    await user.click(await screen.findByRole("button", { name: "New profile" }));
    const form = await dialog("New profile");
    const name = within(form).getByRole("textbox", { name: "Name" });
    const model = within(form).getByRole("combobox", { name: "Model" });
    const temperature = within(form).getByRole("spinbutton", { name: "Temperature" });
    const save = within(form).getByRole("button", { name: "Save profile" });
    await user.type(name, "coder");
    await waitFor(() => expect(within(form).getAllByRole("option")).toHaveLength(3));
    await user.selectOptions(model, QWEN);
    await user.type(temperature, "1.5");

    await user.click(save);
    await waitFor(() => expect(temperature).toHaveAttribute("aria-invalid", "true"));
    expect(temperature).toHaveAccessibleDescription(
      expect.stringContaining(
        "Temperature: must be between 0 and 2 (or empty for the request's or the model's default)",
      ),
    );
    expect(temperature).toHaveFocus();
    expect(name).toHaveAttribute("aria-invalid", "false");
    await user.clear(temperature);
    await user.type(temperature, "1");
    expect(temperature).toHaveAttribute("aria-invalid", "false");

    await user.click(save);
    await waitFor(() => expect(name).toHaveAttribute("aria-invalid", "true"));
    expect(name).toHaveAccessibleDescription(
      expect.stringContaining('Name: a profile named "coder" already exists; choose another name'),
    );
    await user.type(name, "2");
    expect(name).toHaveAttribute("aria-invalid", "false");

    await user.click(save);
    await waitFor(() => expect(model).toHaveAttribute("aria-invalid", "true"));
    expect(model).toHaveAccessibleDescription(expect.stringContaining(`Model: "${QWEN}" is not in the library`));

    // A refusal that names no field is said under the form.
    await user.click(save);
    expect(await within(form).findByRole("alert")).toHaveTextContent("the database is locked");
    expect(screen.getByRole("dialog", { name: "New profile" })).toBe(form);
  });

  it("checks the ranges before sending", async () => {
    const transport = orchard([profile()]);
    const { user } = renderShell(transport, "#/servers");
    await user.click(await screen.findByRole("button", { name: "New profile" }));
    const form = await dialog("New profile");
    const field = (label: string) => within(form).getByRole("spinbutton", { name: label });
    await user.type(field("Temperature"), "2.5");
    await user.type(field("Top P"), "1.1");
    await user.type(field("Min P"), "0.05");
    await user.type(field("Repetition penalty"), "0.4");
    await user.type(field("Top K"), "2.5");
    await user.type(field("Max tokens"), "0");
    await user.type(field("Context length"), "8");
    await user.type(field("Idle time-to-live (minutes)"), "525601");
    await user.click(within(form).getByRole("button", { name: "Save profile" }));

    expect(transport.inputs("create_profile")).toEqual([]);
    const name = within(form).getByRole("textbox", { name: "Name" });
    expect(name).toHaveFocus();
    expect(name).toHaveAccessibleDescription(expect.stringContaining("Name: enter a name for the profile."));
    expect(within(form).getByRole("combobox", { name: "Model" })).toHaveAccessibleDescription(
      expect.stringContaining("Model: choose the Library model this profile serves."),
    );
    const problems: Record<string, string> = {
      Temperature: "Temperature: from 0 to 2, or empty for the default.",
      "Top P": "Top P: more than 0 and at most 1, or empty for the default.",
      "Repetition penalty": "Repetition penalty: from 0.5 to 2, or empty for the default.",
      "Top K": "Top K: a whole number 0 or more, or empty for the default.",
      "Max tokens": "Max tokens: a whole number 1 or more, or empty for no limit.",
      "Context length": "Context length: a whole number 16 or more, or empty for the model's.",
      "Idle time-to-live (minutes)":
        "Idle time-to-live (minutes): a whole number from 0 to 525600, or empty for the API server's setting.",
    };
    for (const [label, problem] of Object.entries(problems)) {
      expect(field(label)).toHaveAttribute("aria-invalid", "true");
      expect(field(label)).toHaveAccessibleDescription(expect.stringContaining(problem));
    }
    expect(field("Min P")).toHaveAttribute("aria-invalid", "false");

    // A name with '/', a Library model's name, or another profile's.
    for (const [typed, problem] of [
      ["team/coder", "Name: no '/'"],
      ["coder", "Name: a profile named “coder” already exists."],
    ]) {
      await user.clear(name);
      await user.type(name, typed!);
      expect(name).toHaveAccessibleDescription(expect.stringContaining(problem!));
    }
  });

  it("refuses a Library model's own name", async () => {
    const transport = orchard().onRead("list_library", [libraryModel({ id: "local-llama", source: "local" })]);
    const { user } = renderShell(transport, "#/servers");
    await user.click(await screen.findByRole("button", { name: "New profile" }));
    const form = await dialog("New profile");
    // With one model in the Library it is chosen already.
    await waitFor(() => expect(within(form).getByRole("combobox", { name: "Model" })).toHaveValue("local-llama"));
    await user.type(within(form).getByRole("textbox", { name: "Name" }), "local-llama");
    await user.click(within(form).getByRole("button", { name: "Save profile" }));
    expect(within(form).getByRole("textbox", { name: "Name" })).toHaveAccessibleDescription(
      expect.stringContaining("Name: “local-llama” is a model in your Library"),
    );
    expect(transport.inputs("create_profile")).toEqual([]);
  });

  it("Escape and Cancel close the form without saving", async () => {
    const transport = orchard([profile()]);
    const { user } = renderShell(transport, "#/servers");
    const edit = within(await itemOf("coder")).getByRole("button", { name: "Edit" });
    await user.click(edit);
    await user.type(within(await dialog("Edit profile")).getByRole("textbox", { name: "Name" }), "x");
    await user.keyboard("{Escape}");
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    expect(edit).toHaveFocus();

    await user.click(screen.getByRole("button", { name: "New profile" }));
    await user.click(within(await dialog("New profile")).getByRole("button", { name: "Cancel" }));
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(transport.count("create_profile") + transport.count("update_profile")).toBe(0);
    // Opened again, the edit starts from the stored profile.
    await user.click(edit);
    expect(within(await dialog("Edit profile")).getByRole("textbox", { name: "Name" })).toHaveValue("coder");
  });

  it("Start loads the profile's model by the profile's name; its tile says Loading, then names the profile", async () => {
    const answer = deferred<ServersView>();
    const transport = orchard([profile()]).onCall("start_server", () => answer.promise);
    const { user } = renderShell(transport, "#/servers");
    const item = await itemOf("coder");
    const start = within(item).getByRole("button", { name: "Start" });
    await user.click(start);
    expect(transport.inputs("start_server")).toEqual([{ model: "coder" }]);

    const tile = await within(screen.getByRole("list", { name: "Servers" })).findByRole("listitem", { name: SMOL });
    expect(within(tile).getByText("Loading…")).toBeInTheDocument();
    expect(within(tile).getByText("Profile: coder")).toBeInTheDocument();
    expect(start).toBeDisabled();

    answer.resolve(serversView([serverTile({ profiles: ["coder"] })]));
    expect(await within(tile).findByText("Running")).toBeInTheDocument();
    expect(within(item).getByText("Running")).toBeInTheDocument();
    expect(start).toBeDisabled();
    expect(start).toHaveAttribute("title", "Its model is loaded: clients can use coder now");
  });

  it("says why a profile's Start failed beside the profile", async () => {
    const transport = orchard([profile()]).onCall("start_server", () => {
      throw new TransportError("not enough memory: needs 90 GB, budget 12 GB", "conflict");
    });
    const { user } = renderShell(transport, "#/servers");
    const item = await itemOf("coder");
    await user.click(within(item).getByRole("button", { name: "Start" }));
    expect(await within(item).findByRole("alert")).toHaveTextContent(
      "Couldn't start coder: not enough memory: needs 90 GB, budget 12 GB",
    );
    // Said once, not also under the Start field.
    expect(screen.getAllByRole("alert")).toHaveLength(1);
  });

  it("a tile names the profiles that serve its model", async () => {
    const transport = orchard().onRead(
      "list_servers",
      serversView([serverTile({ profiles: ["coder", "writer"] }), serverTile({ model: QWEN, profiles: ["chat"] })]),
    );
    renderShell(transport, "#/servers");
    const tiles = await screen.findByRole("list", { name: "Servers" });
    expect(within(within(tiles).getByRole("listitem", { name: SMOL })).getByText("Profiles: coder, writer")).toBeInTheDocument();
    expect(within(within(tiles).getByRole("listitem", { name: QWEN })).getByText("Profile: chat")).toBeInTheDocument();

    transport.emit("server_events", serversView([serverTile({ profiles: [] })]));
    await waitFor(() => expect(screen.queryByText(/^Profiles?:/)).toBeNull());
  });

  it("the Start dropdown offers the profiles, marked as such, and starts one by name", async () => {
    const transport = orchard([profile(), profile({ name: "writer", model: QWEN })])
      .onRead("list_servers", serversView([serverTile({ model: QWEN, profiles: ["writer"] })]))
      .onCall("start_server", () => serversView([serverTile({ model: QWEN }), serverTile({ profiles: ["coder"] })]));
    const { user } = renderShell(transport, "#/servers");
    await profilesList();
    const box = screen.getByRole("combobox", { name: "Model to start" });
    await user.click(box);
    const listbox = screen.getByRole("listbox", { name: "Models in your Library" });
    // Qwen runs already: neither it nor its profile is offered.
    await waitFor(() =>
      expect(within(listbox).getAllByRole("option").map((o) => o.getAttribute("aria-label") ?? o.textContent?.trim())).toEqual([
        "Profile: coder",
        SMOL,
      ]),
    );
    const option = within(listbox).getByRole("option", { name: "Profile: coder" });
    expect(option).toHaveTextContent(`coderProfile · ${SMOL}`);
    await user.click(option);
    expect(box).toHaveValue("coder");
    const form = screen.getByRole("form", { name: "Start a model" });
    await user.click(within(form).getByRole("button", { name: "Start" }));
    expect(transport.inputs("start_server")).toEqual([{ model: "coder" }]);
    expect(
      await within(await screen.findByRole("listitem", { name: SMOL })).findByText("Profile: coder"),
    ).toBeInTheDocument();
  });

  it("filters the Start dropdown by a profile's name or its model", async () => {
    const transport = orchard([profile({ name: "tiny" })]);
    const { user } = renderShell(transport, "#/servers");
    await profilesList();
    const box = screen.getByRole("combobox", { name: "Model to start" });
    await user.type(box, "smol");
    const listbox = screen.getByRole("listbox", { name: "Models in your Library" });
    expect(within(listbox).getAllByRole("option").map((o) => o.getAttribute("aria-label") ?? o.textContent?.trim())).toEqual([
      "Profile: tiny",
      SMOL,
    ]);
    await user.clear(box);
    await user.type(box, "tin");
    expect(within(listbox).getAllByRole("option")).toHaveLength(1);
    await user.keyboard("{ArrowDown}{Enter}");
    expect(box).toHaveValue("tiny");
  });

  it("says when the profiles cannot be read, and reads them again on Retry", async () => {
    let fail = true;
    const transport = orchard().onRead("list_profiles", () => {
      if (fail) throw new TransportError("Orchard is not answering", "unreachable");
      return [profile()];
    });
    const { user } = renderShell(transport, "#/servers");
    const region = await screen.findByRole("region", { name: "Profiles" });
    const alert = await within(region).findByRole("alert");
    expect(alert).toHaveTextContent("Couldn't read the profiles");
    expect(alert).toHaveTextContent("Orchard is not answering");
    fail = false;
    await user.click(within(alert).getByRole("button", { name: "Retry" }));
    expect(await itemOf("coder")).toBeInTheDocument();
  });
});
