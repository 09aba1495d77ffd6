// Renders the whole window (the Shell) on a fake Transport, at a given screen.

import { render } from "@testing-library/svelte";
import { userEvent } from "@testing-library/user-event";
import { vi } from "vitest";
import Shell from "../Shell.svelte";
import { createStores } from "../lib/stores/context";
import { Router } from "../lib/stores/router.svelte";
import { FakeTransport } from "./fake-transport";
import { RUNTIME, results, serversView, settings } from "./fixtures";

/** A transport that answers every read, with an empty Hub, library, servers, keys and profiles. */
export function fakeOrchard(options: { app?: boolean } = {}): FakeTransport {
  return new FakeTransport(options)
    .onRead("list_downloads", [])
    .onRead("list_library", [])
    .onRead("get_settings", settings())
    .onRead("runtime_info", RUNTIME)
    .onRead("list_servers", serversView())
    .onRead("list_keys", [])
    .onRead("list_profiles", [])
    .onCall("search_models", () => results([]));
}

export function renderShell(transport: FakeTransport, hash = "#/models/discover", options: { fakeTimers?: boolean } = {}) {
  window.location.hash = hash;
  const user = userEvent.setup(options.fakeTimers ? { advanceTimers: vi.advanceTimersByTime.bind(vi) } : {});
  const stores = createStores(transport, new Router());
  const view = render(Shell, { props: { transport, stores } });
  return { ...view, user, stores, transport };
}
