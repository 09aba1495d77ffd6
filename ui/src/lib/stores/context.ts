// The stores a screen reads, handed down by the shell through Svelte's context so that a
// component test can hand a screen stores built on a fake Transport.

import { getContext, setContext } from "svelte";
import type { Transport } from "../transport";
import { DownloadsStore } from "./downloads.svelte";
import { KeysStore } from "./keys.svelte";
import { LibraryStore } from "./library.svelte";
import { ProfilesStore } from "./profiles.svelte";
import { Router } from "./router.svelte";
import { SearchStore } from "./search.svelte";
import { ServersStore } from "./servers.svelte";
import { SettingsStore } from "./settings.svelte";
import { ThemeStore } from "./theme.svelte";

export type Stores = {
  transport: Transport;
  router: Router;
  search: SearchStore;
  downloads: DownloadsStore;
  library: LibraryStore;
  settings: SettingsStore;
  servers: ServersStore;
  profiles: ProfilesStore;
  keys: KeysStore;
  theme: ThemeStore;
};

const KEY = Symbol("orchard.stores");

/**
 * Builds every store on one transport; a finished download refreshes the library, a
 * deleted model is no longer shown as downloaded in Discover, a model started or
 * stopped on Servers is shown as such in the Library, and a changed profile is named on
 * its model's tile at once.
 */
export function createStores(
  transport: Transport,
  router: Router = new Router(),
  theme: ThemeStore = new ThemeStore(),
): Stores {
  const search = new SearchStore(transport);
  let downloads: DownloadsStore | undefined;
  const library = new LibraryStore(transport, {
    onDeleted: (id) => {
      downloads?.forget(id);
      search.forget(id);
    },
  });
  downloads = new DownloadsStore(transport, { onDone: () => void library.refresh() });
  const servers = new ServersStore(transport, { onChange: () => void library.refresh() });
  return {
    transport,
    router,
    search,
    downloads,
    library,
    settings: new SettingsStore(transport),
    servers,
    profiles: new ProfilesStore(transport, { onChange: () => void servers.reload() }),
    keys: new KeysStore(transport),
    theme,
  };
}

/**
 * Starts what the page needs at once: the theme, the library, the downloads and their
 * events, settings. Returns what stops following the system's theme.
 */
export function startStores(stores: Stores): () => void {
  const stopTheme = stores.theme.start();
  stores.downloads.start();
  void stores.library.refresh();
  void stores.settings.load();
  return stopTheme;
}

export function disposeStores(stores: Stores): void {
  stores.downloads.dispose();
  stores.servers.unwatch();
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
