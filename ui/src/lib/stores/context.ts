// The stores a screen reads, handed down by the shell through Svelte's context so that a
// component test can hand a screen stores built on a fake Transport.

import { getContext, setContext } from "svelte";
import type { Transport } from "../transport";
import { DownloadsStore } from "./downloads.svelte";
import { LibraryStore } from "./library.svelte";
import { Router } from "./router.svelte";
import { SearchStore } from "./search.svelte";
import { SettingsStore } from "./settings.svelte";

export type Stores = {
  transport: Transport;
  router: Router;
  search: SearchStore;
  downloads: DownloadsStore;
  library: LibraryStore;
  settings: SettingsStore;
};

const KEY = Symbol("orchard.stores");

/**
 * Builds every store on one transport; a finished download refreshes the library, and a
 * deleted model is no longer shown as downloaded in Discover.
 */
export function createStores(transport: Transport, router: Router = new Router()): Stores {
  const search = new SearchStore(transport);
  let downloads: DownloadsStore | undefined;
  const library = new LibraryStore(transport, {
    onDeleted: (id) => {
      downloads?.forget(id);
      search.forget(id);
    },
  });
  downloads = new DownloadsStore(transport, { onDone: () => void library.refresh() });
  return {
    transport,
    router,
    search,
    downloads,
    library,
    settings: new SettingsStore(transport),
  };
}

/** Starts what the page needs at once: the library, the downloads and their events, settings. */
export function startStores(stores: Stores): void {
  stores.downloads.start();
  void stores.library.refresh();
  void stores.settings.load();
}

export function disposeStores(stores: Stores): void {
  stores.downloads.dispose();
  stores.search.dispose();
  stores.router.dispose();
}

export function provideStores(stores: Stores): void {
  setContext(KEY, stores);
}

export function useStores(): Stores {
  const stores = getContext<Stores | undefined>(KEY);
  if (!stores) throw new Error("Orchard: a screen was rendered without its stores");
  return stores;
}

/** The context map a component test passes to render(). */
export function storesContext(stores: Stores): Map<symbol, Stores> {
  return new Map([[KEY, stores]]);
}
