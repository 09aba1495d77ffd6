// How the page talks to Orchard: Tauri commands in the desktop window, the HTTP
// management API in a browser. Screens never import this: they use stores.

import { HttpTransport } from "./http";
import { TauriTransport } from "./tauri";
import type { Transport } from "./types";

export * from "./errors";
export * from "./types";
export { HttpTransport } from "./http";
export { TauriTransport } from "./tauri";

/** Where the browser keeps the API key: for this tab's session only. */
export const API_KEY_STORAGE = "orchard.apiKey";

/** The bits of `window` that pickTransport looks at. */
export type TransportHost = {
  __TAURI_INTERNALS__?: unknown;
  location: { origin: string };
  sessionStorage?: Pick<Storage, "getItem">;
};

/** Tauri IPC inside the Orchard window, otherwise HTTP to the page's own origin. */
export function pickTransport(
  host: TransportHost = window as unknown as TransportHost,
  onUnauthorized?: (hadKey: boolean) => void,
): Transport {
  if (host.__TAURI_INTERNALS__ !== undefined && host.__TAURI_INTERNALS__ !== null) {
    return new TauriTransport();
  }
  return new HttpTransport({
    baseUrl: host.location.origin,
    getKey: () => host.sessionStorage?.getItem(API_KEY_STORAGE) ?? null,
    onUnauthorized,
  });
}
