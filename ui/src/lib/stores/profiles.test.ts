import { describe, expect, it } from "vitest";
import { FakeTransport, deferred } from "../../test/fake-transport";
import { profile } from "../../test/fixtures";
import type { Profile } from "../api/Profile";
import { TransportError } from "../transport";
import { ProfilesStore } from "./profiles.svelte";

describe("ProfilesStore", () => {
  it("keeps the profiles by name; a rename replaces the old entry and tells the tiles", async () => {
    const changes: string[] = [];
    const transport = new FakeTransport()
      .onRead("list_profiles", [profile({ name: "writer" }), profile({ name: "Coder" })])
      .onCall("update_profile", ({ profile: p }) => p)
      .onCall("create_profile", (p) => p);
    const store = new ProfilesStore(transport, { onChange: () => changes.push("changed") });
    await store.load();
    expect(store.profiles.map((p) => p.name)).toEqual(["Coder", "writer"]);

    expect(await store.update("writer", profile({ name: "author" }))).toMatchObject({ name: "author" });
    expect(store.profiles.map((p) => p.name)).toEqual(["author", "Coder"]);
    expect(await store.create(profile({ name: "bot" }))).toMatchObject({ name: "bot" });
    expect(store.profiles.map((p) => p.name)).toEqual(["author", "bot", "Coder"]);
    expect(changes).toEqual(["changed", "changed"]);
  });

  it("sends one save at a time and keeps the refusal", async () => {
    const answer = deferred<Profile>();
    const transport = new FakeTransport().onCall("create_profile", () => answer.promise);
    const store = new ProfilesStore(transport);
    const first = store.create(profile());
    expect(store.saving).toBe(true);
    expect(await store.create(profile({ name: "again" }))).toBeNull();
    answer.reject(new TransportError("name: a profile's name has 1 to 64 characters", "invalid_input"));
    expect(await first).toBeNull();
    expect(store.saving).toBe(false);
    expect(store.saveFailure).toEqual({ message: "name: a profile's name has 1 to 64 characters", code: "invalid_input" });
    expect(transport.count("create_profile")).toBe(1);
    expect(store.profiles).toEqual([]);
  });

  it("a failed read keeps the profiles shown; a failed delete is kept per name", async () => {
    let fail = false;
    const transport = new FakeTransport()
      .onRead("list_profiles", () => {
        if (fail) throw new TransportError("Orchard is not answering", "unreachable");
        return [profile()];
      })
      .onCall("delete_profile", () => {
        throw new TransportError("database is locked", "internal");
      });
    const store = new ProfilesStore(transport);
    await store.load();
    fail = true;
    await store.load();
    expect(store.status).toBe("ready");
    expect(store.profiles).toHaveLength(1);
    expect(store.failure?.message).toBe("Orchard is not answering");

    expect(await store.remove("coder")).toBe(false);
    expect(store.errors.coder?.message).toBe("database is locked");
    expect(store.deleting).toEqual({});
    expect(store.profiles).toHaveLength(1);
  });
});
