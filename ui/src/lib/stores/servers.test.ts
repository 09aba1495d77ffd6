import { describe, expect, it } from "vitest";
import { FakeTransport, deferred } from "../../test/fake-transport";
import { QWEN, SMOL, serverTile, serversView } from "../../test/fixtures";
import type { ServersView } from "../api/ServersView";
import { TransportError } from "../transport";
import { ServersStore } from "./servers.svelte";

describe("ServersStore", () => {
  it("drops a list answer that arrives after a newer stream event", async () => {
    const answer = deferred<ServersView>();
    const transport = new FakeTransport().onRead("list_servers", () => answer.promise);
    const store = new ServersStore(transport);
    store.watch();
    transport.emit("server_events", serversView([serverTile({ generated_tokens: 900 })]));
    answer.resolve(serversView([serverTile({ generated_tokens: 100 })]));
    await answer.promise;
    await Promise.resolve();
    expect(store.status).toBe("ready");
    expect(store.tile(SMOL)?.generated_tokens).toBe(900);
    store.unwatch();
    expect(transport.subscriberCount("server_events")).toBe(0);
  });

  it("shows a Start at once as a loading tile, in the server's order, until Orchard answers", async () => {
    const answer = deferred<ServersView>();
    const changes: string[] = [];
    const transport = new FakeTransport()
      .onRead("list_servers", serversView([serverTile({ model: "zeta/Zed-1B" })]))
      .onCall("start_server", () => answer.promise);
    const store = new ServersStore(transport, { onChange: () => changes.push("changed") });
    await store.reload();
    const pending = store.start(QWEN);
    expect(store.tiles.map((t) => [t.model, store.stateOf(t)])).toEqual([
      [QWEN, "loading"],
      ["zeta/Zed-1B", "running"],
    ]);
    // A second Start of the same model while the first is on its way is not sent.
    expect(await store.start(QWEN)).toBe(false);
    answer.resolve(serversView([serverTile({ model: QWEN }), serverTile({ model: "zeta/Zed-1B" })]));
    expect(await pending).toBe(true);
    expect(transport.inputs("start_server")).toEqual([{ model: QWEN }]);
    expect(store.stateOf(store.tile(QWEN)!)).toBe("running");
    expect(changes).toEqual(["changed"]);
  });

  it("after a failed Start, shows the failed tile Orchard keeps, or the reason when it kept none", async () => {
    let view = serversView([]);
    const transport = new FakeTransport()
      .onRead("list_servers", () => view)
      .onCall("start_server", ({ model }) => {
        if (model === SMOL) view = serversView([serverTile({ state: "failed", error: "out of memory" })]);
        throw new TransportError(model === SMOL ? "out of memory" : `no model called ${model}`, "not_found");
      });
    const store = new ServersStore(transport);
    await store.reload();

    expect(await store.start(SMOL)).toBe(false);
    expect(store.tile(SMOL)).toMatchObject({ state: "failed", error: "out of memory" });
    expect(store.startFailure).toBeNull();

    expect(await store.start("nobody/Nothing")).toBe(false);
    expect(store.tile("nobody/Nothing")).toBeUndefined();
    expect(store.startFailure).toMatchObject({ model: "nobody/Nothing", failure: { code: "not_found" } });
  });

  it("starts a profile by its name on its model's tile, and says where a failed one was asked", async () => {
    const answer = deferred<ServersView>();
    let fail = false;
    const transport = new FakeTransport().onRead("list_servers", serversView([])).onCall("start_server", () => {
      if (fail) throw new TransportError("not enough memory", "conflict");
      return answer.promise;
    });
    const store = new ServersStore(transport);
    await store.reload();
    const pending = store.start("coder", { model: SMOL });
    expect(store.tiles.map((t) => [t.model, t.profiles, store.stateOf(t)])).toEqual([[SMOL, ["coder"], "loading"]]);
    // The model itself is on its way already.
    expect(await store.start(SMOL)).toBe(false);
    answer.resolve(serversView([serverTile({ profiles: ["coder"] })]));
    expect(await pending).toBe(true);
    expect(transport.inputs("start_server")).toEqual([{ model: "coder" }]);

    fail = true;
    expect(await store.start("writer", { model: QWEN, from: "profiles" })).toBe(false);
    expect(store.startFailure).toMatchObject({ model: "writer", from: "profiles", failure: { code: "conflict" } });
  });
});
